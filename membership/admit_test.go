package membership_test

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/internal/syncbuf"
	"github.com/proglog/proglog/membership"
	"github.com/proglog/proglog/pki/pkitest"
)

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = syncbuf.Buffer

// config is a member's configuration for a test on loopback.
func config(t *testing.T, id, rpcAddr string, key []byte, h membership.Handler) membership.Config {
	return membership.Config{
		NodeID: id, GossipAddr: "127.0.0.1:0", RPCAddr: rpcAddr, SecretKey: key, Handler: h,
		ReconcileInterval: 200 * time.Millisecond, Local: true, Logger: logger(t).With("node", id),
	}
}

func mustNew(t *testing.T, cfg membership.Config) *membership.Membership {
	t.Helper()
	m, err := membership.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func status(m *membership.Membership, id string) string {
	for _, mem := range m.Members() {
		if mem.ID == id {
			return mem.Status
		}
	}
	return ""
}

// TestJoinNeedsClusterCertificate runs a leader that verifies joiners with
// TLSVerifier and four joiners that all hold the gossip key: one with a
// server certificate of the cluster's CA for its address, one with a
// foreign CA's, one with the cluster's CA's for another address, and one
// with a good certificate that is not listening yet. Only the good ones
// become voters, the last once it listens.
func TestJoinNeedsClusterCertificate(t *testing.T) {
	ca, foreign := pkitest.NewCA(t), pkitest.NewCA(t)
	key := newKey(t)
	lead := &recorder{leader: true, members: map[string]string{"n1": "127.0.0.1:1"}}
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	cfg := config(t, "n1", "127.0.0.1:1", key, lead)
	cfg.Verify = clusterVerifier(t, ca)
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m1 := mustNew(t, cfg)
	defer m1.Close()

	joiners := map[string]string{
		"good":      tlsServer(t, server(t, ca, "good"), ca),
		"foreign":   tlsServer(t, server(t, foreign, "foreign"), foreign),
		"elsewhere": tlsServer(t, server(t, ca, "elsewhere", "10.9.9.9"), ca),
	}
	// A free port, picked once the servers above hold theirs: the kernel may
	// hand a port just closed to the next listener.
	late, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lateAddr := late.Addr().String()
	late.Close()
	joiners["late"] = lateAddr
	for id, addr := range joiners {
		cfg := config(t, id, addr, key, &recorder{members: map[string]string{}})
		cfg.Join = []string{m1.GossipAddr()}
		m := mustNew(t, cfg)
		defer m.Close()
	}
	eventually(t, "the good joiner to become a voter", func() bool { return lead.snapshot()["good"] == joiners["good"] })
	// Each of the other three is refused at least twice (on the join event
	// and on reconciles) and logged once.
	eventually(t, "the others to be refused again", func() bool {
		return counter(t, reg, "proglog_membership_joins_refused_total") >= 9
	})
	for _, id := range []string{"foreign", "elsewhere", "late"} {
		if _, ok := lead.snapshot()[id]; ok {
			t.Fatalf("%s became a voter", id)
		}
		if n := strings.Count(logs.String(), "member="+id+" "); n != 1 {
			t.Errorf("%s: %d log lines, want 1 refusal logged once:\n%s", id, n, logs.String())
		}
	}
	for what, want := range map[string]string{
		"foreign":   "certificate not issued by the cluster's CA",
		"elsewhere": "not valid for the advertised address",
		"late":      "unreachable",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("%s: no refusal saying %q:\n%s", what, want, logs.String())
		}
	}

	// The late joiner starts listening: it is admitted on a reconcile.
	ln, err := net.Listen("tcp", lateAddr)
	if err != nil {
		t.Skipf("the late joiner's port was taken meanwhile: %v", err)
	}
	tlsServeOn(t, ln, server(t, ca, "late"), ca)
	eventually(t, "the late joiner to become a voter", func() bool { return lead.snapshot()["late"] == lateAddr })
	if got := lead.snapshot(); len(got) != 3 {
		t.Fatalf("voters %v, want n1, good and late", got)
	}
}

// reapCluster starts n1 (a leader whose voters are n1, n2 and n3) with
// ReapFailedAfter reap, and n2 and n3.
func reapCluster(t *testing.T, reap time.Duration) (lead *recorder, reg *prometheus.Registry, m1 *membership.Membership, ms map[string]*membership.Membership, cfgs map[string]membership.Config) {
	t.Helper()
	key := newKey(t)
	lead = &recorder{leader: true, members: map[string]string{"n1": rpcAddr("n1"), "n2": rpcAddr("n2"), "n3": rpcAddr("n3")}}
	reg = prometheus.NewRegistry()
	cfg := config(t, "n1", rpcAddr("n1"), key, lead)
	cfg.ReapFailedAfter = reap
	cfg.Registerer = reg
	m1 = mustNew(t, cfg)
	t.Cleanup(func() { m1.Close() })
	ms, cfgs = map[string]*membership.Membership{}, map[string]membership.Config{}
	for _, id := range []string{"n2", "n3"} {
		c := config(t, id, rpcAddr(id), key, &recorder{members: map[string]string{}})
		c.Join = []string{m1.GossipAddr()}
		ms[id] = mustNew(t, c)
		c.GossipAddr = ms[id].GossipAddr()
		cfgs[id] = c
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.Close()
		}
	})
	eventually(t, "n2 and n3 alive", func() bool { return status(m1, "n2") == "alive" && status(m1, "n3") == "alive" })
	return lead, reg, m1, ms, cfgs
}

func rpcAddr(id string) string { return "127.0.0.1:1000" + id[1:] }

// TestReapFailedMember: a member failed longer than ReapFailedAfter is
// removed from the voters and from gossip, and joins again when it comes
// back.
func TestReapFailedMember(t *testing.T) {
	lead, reg, m1, ms, cfgs := reapCluster(t, 300*time.Millisecond)
	ms["n3"].Close()
	eventually(t, "n3 to be removed from the voters", func() bool {
		_, ok := lead.snapshot()["n3"]
		return !ok
	})
	eventually(t, "n3 to be removed from gossip", func() bool { return status(m1, "n3") == "left" })
	if n := counter(t, reg, "proglog_membership_failed_members_removed_total"); n != 1 {
		t.Fatalf("removed %v members, want 1", n)
	}
	ms["n3"] = mustNew(t, cfgs["n3"])
	eventually(t, "n3 to be a voter again", func() bool { return lead.snapshot()["n3"] == rpcAddr("n3") })
	if status(m1, "n3") != "alive" {
		t.Fatalf("members %+v", m1.Members())
	}
}

// TestNoReapWithoutQuorum: with two of three voters failed nothing is
// removed: the one voter left alive would not be a majority of the two
// that remain.
func TestNoReapWithoutQuorum(t *testing.T) {
	// Gossip notices the two failures up to a couple of seconds apart; the
	// first is due for removal only after both are seen failed.
	const reap = 3 * time.Second
	lead, reg, m1, ms, _ := reapCluster(t, reap)
	ms["n2"].Close()
	ms["n3"].Close()
	eventually(t, "n2 and n3 failed", func() bool { return status(m1, "n2") == "failed" && status(m1, "n3") == "failed" })
	time.Sleep(reap + time.Second)
	if got := lead.snapshot(); len(got) != 3 {
		t.Fatalf("voters %v: a failed member was removed although no live majority would remain", got)
	}
	if status(m1, "n2") != "failed" || status(m1, "n3") != "failed" {
		t.Fatalf("members %+v: a failed member was removed from gossip", m1.Members())
	}
	if n := counter(t, reg, "proglog_membership_failed_members_removed_total"); n != 0 {
		t.Fatalf("removed %v members, want 0", n)
	}
}

// TestRemove: Remove refuses this node, a live member, an unknown one, and
// a removal that leaves no live majority; it removes a failed voter from
// the voters and from gossip at once (no ReapFailedAfter), and a voter
// gossip never knew; a follower answers the Handler's not-leader error.
func TestRemove(t *testing.T) {
	lead, _, m1, ms, cfgs := reapCluster(t, 0) // 0: never reaps by itself
	ctx := t.Context()
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"n1", membership.ErrSelf},
		{"n2", membership.ErrAlive},
		{"n9", membership.ErrUnknownMember},
	} {
		if err := m1.Remove(ctx, tc.id); !errors.Is(err, tc.want) {
			t.Errorf("Remove(%s) = %v, want %v", tc.id, err, tc.want)
		}
	}
	if err := ms["n2"].Remove(ctx, "n3"); !errors.Is(err, raft.ErrNotLeader) {
		t.Errorf("Remove on a follower = %v, want raft.ErrNotLeader", err)
	}

	ms["n3"].Close()
	eventually(t, "n3 failed", func() bool { return status(m1, "n3") == "failed" })
	if err := m1.Remove(ctx, "n3"); err != nil {
		t.Fatalf("Remove(n3): %v", err)
	}
	if _, ok := lead.snapshot()["n3"]; ok {
		t.Fatalf("voters %v still hold n3", lead.snapshot())
	}
	if s := status(m1, "n3"); s != "left" {
		t.Fatalf("n3 is %q in gossip, want left", s)
	}
	if err := m1.Remove(ctx, "n3"); err != nil {
		t.Fatalf("Remove(n3) again: %v, want nil (already out)", err)
	}
	// A voter that gossip does not know (it never joined, or was
	// forgotten) is removed too.
	lead.mu.Lock()
	lead.members["n7"] = rpcAddr("n7")
	lead.mu.Unlock()
	if err := m1.Remove(ctx, "n7"); err != nil {
		t.Fatalf("Remove(n7): %v", err)
	}
	// Two dead voters that gossip does not know: removing n2 once it has
	// failed would leave n1, n8 and n9, of which only n1 lives.
	lead.mu.Lock()
	lead.members["n8"] = rpcAddr("n8")
	lead.members["n9"] = rpcAddr("n9")
	lead.mu.Unlock()
	ms["n2"].Close()
	eventually(t, "n2 failed", func() bool { return status(m1, "n2") == "failed" })
	if err := m1.Remove(ctx, "n2"); !errors.Is(err, membership.ErrNoLiveMajority) {
		t.Fatalf("Remove(n2) with voters n1, n8, n9 left of which only n1 lives = %v, want ErrNoLiveMajority", err)
	}
	if _, ok := lead.snapshot()["n2"]; !ok {
		t.Fatal("n2 was removed although no live majority remains")
	}

	// A removed member that comes back joins again like a new one.
	ms["n3"] = mustNew(t, cfgs["n3"])
	eventually(t, "n3 to be a voter again", func() bool { return lead.snapshot()["n3"] == rpcAddr("n3") })

	m1.Close()
	if err := m1.Remove(ctx, "n2"); !errors.Is(err, membership.ErrClosed) {
		t.Fatalf("Remove after Close = %v, want ErrClosed", err)
	}
}
