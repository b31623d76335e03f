package cluster_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
)

// votersOf maps the nodes' IDs to their Raft addresses, as every replica
// of a group is given them.
func votersOf(nodes []*node) map[string]string {
	voters := map[string]string{}
	for _, n := range nodes {
		voters[n.id] = n.port.addr
	}
	return voters
}

// startGroup starts the Raft group name on sys's port, beside sys's system
// group, with its own dir; a fresh one bootstraps with voters. The node it
// returns shares sys's port: stop it with stopGroup, which leaves the port.
func (p *testPKI) startGroup(t testing.TB, sys *node, name, dir string, voters map[string]string, opts ...nodeOpt) *node {
	t.Helper()
	cfg := cluster.Config{
		NodeID:    sys.id,
		DataDir:   dir,
		Bootstrap: true,
		Voters:    voters,
		Stream:    sys.port.layer,
		Group:     name,
		Logger:    clustertest.Logger(t).With("node", sys.id),
	}
	testTimings(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	l, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &node{id: sys.id, dir: dir, port: sys.port, log: l}
	t.Cleanup(func() { g.stopGroup(t) })
	return g
}

func (g *node) stopGroup(t testing.TB) {
	t.Helper()
	if g.log == nil {
		return
	}
	if err := g.log.Close(); err != nil {
		t.Errorf("close %s's group: %v", g.id, err)
	}
	g.log = nil
}

// startGroupOn starts group name on each of sys, with voters all of sys.
func (p *testPKI) startGroupOn(t testing.TB, name string, sys []*node, opts ...nodeOpt) []*node {
	t.Helper()
	var replicas []*node
	for _, n := range sys {
		replicas = append(replicas, p.startGroup(t, n, name, t.TempDir(), votersOf(sys), opts...))
	}
	return replicas
}

var batches atomic.Int64

// appendAll appends a batch of n records named after the group through
// whichever replica leads, waits until every replica holds the same
// records, and returns their next offset. Several groups on one loaded
// machine lose leadership now and then, so an append whose outcome is
// unknown is made again: the batch may then be in the log twice, but
// whole, and nothing but the group's records is.
func appendAll(t testing.TB, name string, replicas []*node, n int) uint64 {
	t.Helper()
	values := batch(fmt.Sprintf("%s-%d", name, batches.Add(1)), n)
	var next uint64
	for try := 0; ; try++ {
		leader := waitLeader(t, replicas...)
		base, err := leader.log.AppendBatch(t.Context(), values)
		if err == nil {
			next = base + uint64(n)
			break
		}
		if try == 100 || !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
			t.Fatalf("append to group %s on %s: %v", name, leader.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitApplied(t, next, replicas...)
	got := sameLogs(t, replicas...)
	for i, v := range got {
		if !strings.HasPrefix(string(v), name+"-") {
			t.Fatalf("group %s holds %q at %d, another group's record", name, v, i)
		}
	}
	for i, v := range values {
		if at := next - uint64(n) + uint64(i); string(got[at]) != string(v) {
			t.Fatalf("group %s holds %q at %d, want %q", name, got[at], at, v)
		}
	}
	return next
}

// TestGroupsShareStreamLayers: three nodes run the system group and two
// named groups over one port each; every group elects a leader of its own
// and replicates its own records, with either transport.
func TestGroupsShareStreamLayers(t *testing.T) {
	for _, tr := range []cluster.RaftTransport{cluster.TransportMux, cluster.TransportStream} {
		t.Run(tr.String(), func(t *testing.T) { testGroupsShareStreamLayers(t, tr) })
	}
}

func testGroupsShareStreamLayers(t *testing.T, tr cluster.RaftTransport) {
	p := newTestPKI(t)
	sys := p.startCluster(t, 3)
	groups := map[string][]*node{"system": sys}
	for _, name := range []string{"orders.0", "orders.1"} {
		groups[name] = p.startGroupOn(t, name, sys, func(c *cluster.Config) { c.RaftTransport = tr })
	}
	for i, name := range []string{"system", "orders.0", "orders.1"} {
		appendAll(t, name, groups[name], 5*(i+1))
	}
	for name, replicas := range groups {
		servers, err := replicas[0].log.Servers()
		if err != nil {
			t.Fatal(err)
		}
		if len(servers) != 3 {
			t.Fatalf("group %s: servers %+v, want 3", name, servers)
		}
		for _, s := range servers {
			if want := votersOf(sys)[s.ID]; s.RPCAddr != want {
				t.Fatalf("group %s: %s at %s, want %s (the node's one port)", name, s.ID, s.RPCAddr, want)
			}
		}
	}
}

// TestGroupLateReplica: a group started on two of its three voters runs
// with their quorum; the third, started later, catches up.
func TestGroupLateReplica(t *testing.T) {
	p := newTestPKI(t)
	sys := p.startCluster(t, 3)
	voters := votersOf(sys)
	var replicas []*node
	for _, n := range sys[:2] {
		replicas = append(replicas, p.startGroup(t, n, "late.0", t.TempDir(), voters))
	}
	next := appendAll(t, "late.0", replicas, 20)
	replicas = append(replicas, p.startGroup(t, sys[2], "late.0", t.TempDir(), voters))
	waitApplied(t, next, replicas...)
	appendAll(t, "late.0", replicas, 5)
}

// TestGroupSnapshotOverMux: a replica started after its group compacted
// its Raft log catches up through InstallSnapshot (a connection of its own)
// while other groups keep replicating over the same nodes' Mux, and it
// arrives whole; cutting every Raft connection of a node mid-flight only
// delays the groups.
func TestGroupSnapshotOverMux(t *testing.T) {
	p := newTestPKI(t)
	sys := p.startCluster(t, 3)
	compact := func(c *cluster.Config) {
		c.SnapshotThreshold = 20
		c.TrailingLogs = 5
		c.Store.MaxSegmentBytes = 4096 // several segments in the snapshot
	}
	others := map[string][]*node{}
	for _, name := range []string{"o.0", "o.1", "o.2"} {
		others[name] = p.startGroupOn(t, name, sys)
	}
	voters := votersOf(sys)
	var snap []*node
	for _, n := range sys[:2] {
		snap = append(snap, p.startGroup(t, n, "snap.0", t.TempDir(), voters, compact))
	}
	for range 30 {
		appendAll(t, "snap.0", snap, 10)
	}
	if err := waitLeader(t, snap...).log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for name, replicas := range others {
				select {
				case <-stop:
					return
				default:
				}
				appendAll(t, name, replicas, 3)
			}
		}
	}()
	snap = append(snap, p.startGroup(t, sys[2], "snap.0", t.TempDir(), voters, compact))
	appendAll(t, "snap.0", snap, 5)
	if st := snap[2].log.Stats(); st.Segments < 2 {
		t.Errorf("the late replica has %d segments; the snapshot should have carried several", st.Segments)
	}
	sys[1].port.layer.Isolate(true) // cut a node's every Raft connection
	time.Sleep(100 * time.Millisecond)
	sys[1].port.layer.Isolate(false)
	close(stop)
	<-done
	next := appendAll(t, "snap.0", snap, 5)
	waitApplied(t, next, snap...)
	for name, replicas := range others {
		appendAll(t, name, replicas, 1)
	}
}

// TestGroupCloseAndRestart: closing a group on a node (here its leader)
// leaves that node's other groups working, the group goes on with the
// others, and the node starts it again from its data dir and catches up.
func TestGroupCloseAndRestart(t *testing.T) {
	p := newTestPKI(t)
	sys := p.startCluster(t, 3)
	a := p.startGroupOn(t, "a", sys)
	b := p.startGroupOn(t, "b", sys)
	appendAll(t, "a", a, 10)
	appendAll(t, "b", b, 10)

	victim := waitLeader(t, a...)
	victim.stopGroup(t)
	appendAll(t, "b", b, 10) // the victim's replica among them
	appendAll(t, "system", sys, 10)
	var rest []*node
	for _, r := range a {
		if r != victim {
			rest = append(rest, r)
		}
	}
	next := appendAll(t, "a", rest, 10)

	restarted := p.startGroup(t, sysOf(sys, victim.id), "a", victim.dir, votersOf(sys))
	*victim = *restarted
	waitApplied(t, next, a...)
	appendAll(t, "a", a, 5)
}

func sysOf(sys []*node, id string) *node {
	for _, n := range sys {
		if n.id == id {
			return n
		}
	}
	panic(fmt.Sprint("no node ", id))
}

// TestGroupConfig: what New refuses for a group, without harm to the
// stream layer and the groups already on it.
func TestGroupConfig(t *testing.T) {
	p := newTestPKI(t)
	sys := p.startCluster(t, 1)
	n := sys[0]
	voters := votersOf(sys)
	running := p.startGroup(t, n, "running", t.TempDir(), voters)
	tests := []struct {
		name string
		cfg  func(*cluster.Config)
	}{
		{"bad name", func(c *cluster.Config) { c.Group = "a b" }},
		{"running already", func(c *cluster.Config) { c.Group = "running" }},
		{"voters without this node", func(c *cluster.Config) { c.Voters = map[string]string{"other": n.port.addr} }},
		{"voters with another address", func(c *cluster.Config) { c.Voters = map[string]string{n.id: "127.0.0.1:1"} }},
		{"voters without bootstrap", func(c *cluster.Config) { c.Bootstrap = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cluster.Config{NodeID: n.id, DataDir: t.TempDir(), Bootstrap: true, Voters: voters, Stream: n.port.layer, Group: "g"}
			tt.cfg(&cfg)
			if l, err := cluster.New(cfg); err == nil {
				l.Close()
				t.Fatal("New succeeded")
			}
		})
	}
	// Only a node bootstrapping alone adopts records it held before Raft.
	held := t.TempDir()
	smallStore(t, filepath.Join(held, "log"), 3).Close()
	cfg := cluster.Config{NodeID: n.id, DataDir: held, Bootstrap: true, Stream: n.port.layer, Group: "g",
		Voters: map[string]string{n.id: n.port.addr, "other": "127.0.0.1:1"}}
	if l, err := cluster.New(cfg); !errors.Is(err, cluster.ErrExistingStore) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("bootstrapping with others over a store without raft state: %v, want ErrExistingStore", err)
	}
	appendAll(t, "running", []*node{running}, 3)
	appendAll(t, "system", sys, 3)
}

// TestGroupAloneWithVoters: a node promised to stay alone still runs the
// configured timeouts when bootstrapped with other voters.
func TestGroupAloneWithVoters(t *testing.T) {
	p := newTestPKI(t)
	pt := p.startPort(t, "n1", "", clustertest.Logger(t))
	defer pt.stop(t)
	cfg := cluster.Config{NodeID: "n1", DataDir: t.TempDir(), Bootstrap: true, Alone: true, Stream: pt.layer, Group: "g",
		Voters: map[string]string{"n1": pt.addr, "n2": "127.0.0.1:1"}}
	testTimings(&cfg)
	l, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := cluster.HeartbeatTimeout(l); got != cfg.HeartbeatTimeout {
		t.Fatalf("heartbeat timeout %v, want the configured %v", got, cfg.HeartbeatTimeout)
	}
}
