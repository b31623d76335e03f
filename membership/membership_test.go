package membership_test

import (
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/internal/leaktest"
	"github.com/proglog/proglog/membership"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// recorder is a Handler that acts like a Raft leader (leader true) or a
// follower (returns raft.ErrNotLeader).
type recorder struct {
	leader  bool
	mu      sync.Mutex // guards members
	members map[string]string
}

func (r *recorder) Join(id, addr string) error {
	if !r.leader {
		return raft.ErrNotLeader
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members[id] = addr
	return nil
}

func (r *recorder) Leave(id string) error {
	if !r.leader {
		return raft.ErrNotLeader
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.members, id)
	return nil
}

func (r *recorder) Voters() (map[string]string, error) {
	if !r.leader {
		return nil, raft.ErrNotLeader
	}
	return r.snapshot(), nil
}

func (r *recorder) RemoveFailed(id string) error { return r.Leave(id) }

func (r *recorder) snapshot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.members {
		out[k] = v
	}
	return out
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func start(t *testing.T, id, gossip string, key []byte, h membership.Handler, join ...string) (*membership.Membership, error) {
	t.Helper()
	if gossip == "" {
		gossip = "127.0.0.1:0"
	}
	return membership.New(membership.Config{
		NodeID: id, GossipAddr: gossip, RPCAddr: "127.0.0.1:1000" + id[1:],
		Join: join, SecretKey: key, Handler: h, ReconcileInterval: 200 * time.Millisecond,
		Local: true, Logger: logger(t).With("node", id),
	})
}

func mustStart(t *testing.T, id, gossip string, key []byte, h membership.Handler, join ...string) *membership.Membership {
	t.Helper()
	m, err := start(t, id, gossip, key, h, join...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJoinLeaveRejoin(t *testing.T) {
	key := newKey(t)
	lead := &recorder{leader: true, members: map[string]string{}}
	m1 := mustStart(t, "n1", "", key, lead)
	defer m1.Close()
	m2 := mustStart(t, "n2", "", key, &recorder{members: map[string]string{}}, m1.GossipAddr())
	m3 := mustStart(t, "n3", "", key, &recorder{members: map[string]string{}}, m1.GossipAddr())
	eventually(t, "n2 and n3 to reach the handler", func() bool {
		got := lead.snapshot()
		return len(got) == 2 && got["n2"] == "127.0.0.1:10002" && got["n3"] == "127.0.0.1:10003"
	})
	if len(m1.Members()) != 3 {
		t.Fatalf("members %+v", m1.Members())
	}

	// A crash (no leave) keeps the member; a restart with the same id and
	// address rejoins as itself.
	gossip2 := m2.GossipAddr()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n2 to be seen as failed", func() bool {
		for _, m := range m1.Members() {
			if m.ID == "n2" {
				return m.Status == "failed"
			}
		}
		return false
	})
	if _, ok := lead.snapshot()["n2"]; !ok {
		t.Fatal("a failed member was removed; it must stay a voter")
	}
	m2 = mustStart(t, "n2", gossip2, key, &recorder{members: map[string]string{}}, m1.GossipAddr())
	defer m2.Close()
	eventually(t, "n2 alive again", func() bool {
		for _, m := range m1.Members() {
			if m.ID == "n2" {
				return m.Status == "alive"
			}
		}
		return false
	})

	// A graceful leave reaches the handler.
	if err := m3.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n3 to leave", func() bool {
		_, ok := lead.snapshot()["n3"]
		return !ok
	})
}

func TestWithoutKeyCannotJoin(t *testing.T) {
	key := newKey(t)
	lead := &recorder{leader: true, members: map[string]string{}}
	m1 := mustStart(t, "n1", "", key, lead)
	defer m1.Close()
	for name, k := range map[string][]byte{"no key": nil, "wrong key": newKey(t)} {
		t.Run(name, func(t *testing.T) {
			m, err := start(t, "n9", "", k, &recorder{members: map[string]string{}}, m1.GossipAddr())
			if err == nil {
				m.Close()
				t.Fatal("a node without the cluster's key joined")
			}
		})
	}
	if len(m1.Members()) != 1 || len(lead.snapshot()) != 0 {
		t.Fatalf("members %+v after refused joins", m1.Members())
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", true},
		{"AAAAAAAAAAAAAAAAAAAAAA==", true},
		{"AAAA", false},
		{"not base64!", false},
	}
	for _, tt := range tests {
		if _, err := membership.ParseKey(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseKey(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

// TestRestartRejoinsFromSnapshot restarts a member without any Join
// addresses: it finds the cluster again from its Serf snapshot.
func TestRestartRejoinsFromSnapshot(t *testing.T) {
	key := newKey(t)
	lead := &recorder{leader: true, members: map[string]string{}}
	m1 := mustStart(t, "n1", "", key, lead)
	defer m1.Close()
	snap := filepath.Join(t.TempDir(), "serf.snapshot")
	cfg := membership.Config{
		NodeID: "n2", GossipAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:10002", Join: []string{m1.GossipAddr()},
		SecretKey: key, Handler: &recorder{members: map[string]string{}}, SnapshotPath: snap,
		ReconcileInterval: 200 * time.Millisecond, Local: true, Logger: logger(t),
	}
	m2, err := membership.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "n2 to join", func() bool { return len(lead.snapshot()) == 1 })
	cfg.GossipAddr = m2.GossipAddr()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Join = nil
	m2, err = membership.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	eventually(t, "n2 to see n1 again", func() bool {
		for _, m := range m2.Members() {
			if m.ID == "n1" && m.Status == "alive" {
				return true
			}
		}
		return false
	})
}
