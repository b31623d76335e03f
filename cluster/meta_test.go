package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
)

// listMeta is the simplest deterministic MetaFSM: the list of commands
// applied, each with its index and time. Its state is their
// concatenation.
type listMeta struct {
	mu   sync.Mutex
	cmds []string
}

func (m *listMeta) Apply(index uint64, at time.Time, cmd []byte) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cmds = append(m.cmds, fmt.Sprintf("%d@%d:%s", index, at.UnixNano(), cmd))
	return len(m.cmds)
}

func (m *listMeta) Snapshot() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b bytes.Buffer
	for _, c := range m.cmds {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func (m *listMeta) Restore(state []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cmds = nil
	for line := range bytes.Lines(state) {
		m.cmds = append(m.cmds, string(bytes.TrimSuffix(line, []byte("\n"))))
	}
	return nil
}

func (m *listMeta) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cmds)
}

// metas gives every node started with its option a listMeta of its own.
type metas struct {
	mu   sync.Mutex
	byID map[string]*listMeta
}

func (ms *metas) opt(c *cluster.Config) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byID == nil {
		ms.byID = map[string]*listMeta{}
	}
	m := &listMeta{}
	ms.byID[c.NodeID] = m
	c.Meta = m
}

func (ms *metas) of(id string) *listMeta {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.byID[id]
}

// waitMeta waits until every node's catalogue lists want.
func (ms *metas) wait(t *testing.T, want []string, nodes ...*node) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for !slices.Equal(ms.of(n.id).list(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's catalogue holds %q, want %q", n.id, ms.of(n.id).list(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestCatalogueEntriesReachEveryNodeAndSurviveSnapshots(t *testing.T) {
	p := newTestPKI(t)
	var ms metas
	compact := func(c *cluster.Config) {
		c.SnapshotThreshold = 10
		c.TrailingLogs = 2
		c.SnapshotInterval = 50 * time.Millisecond
	}
	nodes := p.startCluster(t, 2, ms.opt, compact)
	leader := waitLeader(t, nodes...)
	follower := followerOf(nodes, leader)

	if _, err := follower.log.ProposeMeta(t.Context(), []byte("x")); !errors.As(err, new(*cluster.NotLeaderError)) {
		t.Fatalf("ProposeMeta on a follower: %v, want a NotLeaderError", err)
	}
	var want []string
	propose := func(cmd string) {
		t.Helper()
		resp, err := leader.log.ProposeMeta(t.Context(), []byte(cmd))
		if err != nil {
			t.Fatalf("ProposeMeta %q: %v", cmd, err)
		}
		got := ms.of(leader.id).list()
		if resp != len(got) || !bytes.HasSuffix([]byte(got[len(got)-1]), []byte(":"+cmd)) {
			t.Fatalf("ProposeMeta %q answered %v; the leader's catalogue holds %q", cmd, resp, got)
		}
		want = got
	}
	// Catalogue entries between record batches: the records keep their
	// offsets, the catalogue its order.
	for i := range 30 {
		propose(fmt.Sprintf("cmd-%d", i))
		appendTo(t, nodes, batch(fmt.Sprintf("r%d-", i), 2))
	}
	ms.wait(t, want, nodes...)
	if _, next := leader.log.Bounds(); next != 60 {
		t.Fatalf("records end at %d, want 60: catalogue entries took offsets", next)
	}
	if err := leader.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	propose("after-snapshot")

	// A node that joins after compaction gets the catalogue in a snapshot,
	// then the entries after it.
	n3 := p.startNode(t, "n3", t.TempDir(), "", false, ms.opt, compact)
	t.Cleanup(func() { n3.stop(t) })
	all := append(nodes, n3)
	join(t, nodes, n3)
	propose("after-join")
	ms.wait(t, want, all...)

	// A restart restores the catalogue from its snapshot and replays the
	// entries after it, exactly once.
	follower.stop(t)
	back := p.startNode(t, follower.id, follower.dir, follower.port.addr, false, ms.opt, compact)
	*follower = *back
	propose("after-restart")
	ms.wait(t, want, all...)
}

func TestCatalogueEntryOnAGroupWithoutOne(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 1)
	if _, err := nodes[0].log.ProposeMeta(context.Background(), []byte("x")); !errors.Is(err, cluster.ErrNoMeta) {
		t.Fatalf("ProposeMeta without a MetaFSM: %v, want ErrNoMeta", err)
	}
}
