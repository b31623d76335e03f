package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/logstore"
)

func TestReplication(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	var wg sync.WaitGroup
	bases := make([]uint64, 8)
	for w := range bases {
		wg.Go(func() {
			base, err := leader.log.AppendBatch(t.Context(), batch(fmt.Sprint("w", w), 25))
			if err != nil {
				t.Error(err)
			}
			bases[w] = base
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Batches are contiguous and disjoint.
	slices.Sort(bases)
	for i, b := range bases {
		if b != uint64(i*25) {
			t.Fatalf("batch bases %v are not 25 apart", bases)
		}
	}
	waitApplied(t, 200, nodes...)
	got := sameLogs(t, nodes...)
	for _, b := range bases {
		w := string(got[b][:2])
		for i := range 25 {
			if want := fmt.Sprintf("%s-%d", w, i); string(got[b+uint64(i)]) != want {
				t.Fatalf("offset %d = %q, want %q (a batch was split)", b+uint64(i), got[b+uint64(i)], want)
			}
		}
	}

	servers, err := nodes[1].log.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Fatalf("servers %+v, want 3", servers)
	}
	leaders := 0
	for _, s := range servers {
		if s.IsLeader {
			leaders++
			if s.ID != leader.id || s.RPCAddr != leader.port.addr {
				t.Fatalf("servers %+v name the wrong leader, want %s", servers, leader.id)
			}
		}
	}
	if leaders != 1 {
		t.Fatalf("servers %+v: %d leaders", servers, leaders)
	}
}

func TestFollowerRefusesAppend(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 2)
	leader := waitLeader(t, nodes...)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := follower.log.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := follower.log.Append(t.Context(), []byte("x"))
	var nl *cluster.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, cluster.ErrNotLeader) || !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("append on a follower: %v, want a NotLeaderError", err)
	}
	if nl.LeaderID != leader.id || nl.LeaderAddr != leader.port.addr {
		t.Fatalf("NotLeaderError %+v, want leader %s at %s", nl, leader.id, leader.port.addr)
	}
	if _, next := follower.log.Bounds(); next != 0 {
		t.Fatalf("follower holds %d records after a refused append", next)
	}
	if err := follower.log.Join("n9", "127.0.0.1:1"); !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("join on a follower: %v, want ErrNotLeader", err)
	}
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	if _, err := leader.log.AppendBatch(t.Context(), batch("before", 50)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, 50, nodes...)
	f := followerOf(nodes, leader)
	f.stop(t)
	for i := range 10 {
		appendTo(t, nodes, batch(fmt.Sprint("while-down-", i), 10))
	}
	restarted := p.startNode(t, f.id, f.dir, f.port.addr, false)
	*f = *restarted
	waitApplied(t, 150, nodes...)
	sameLogs(t, nodes...)
	// Replay after the restart did not append anything twice.
	if _, next := f.log.Bounds(); next != 150 {
		t.Fatalf("restarted follower ends at %d, want 150", next)
	}
}

func TestSingleNodeRestartReplaysWithoutDuplicates(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprint("snapshot=", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			n := p.startNode(t, "solo", dir, "", true)
			waitLeader(t, n)
			var want [][]byte
			for i := range 5 {
				vals := batch(fmt.Sprint("a", i), 7)
				want = append(want, vals...)
				if _, err := n.log.AppendBatch(t.Context(), vals); err != nil {
					t.Fatal(err)
				}
				if snapshot && i == 2 {
					if err := n.log.Snapshot(); err != nil {
						t.Fatal(err)
					}
				}
			}
			addr := n.port.addr
			n.stop(t)
			n = p.startNode(t, "solo", dir, addr, true)
			defer n.stop(t)
			waitLeader(t, n)
			base, err := n.log.Append(t.Context(), []byte("after"))
			if err != nil {
				t.Fatal(err)
			}
			if base != uint64(len(want)) {
				t.Fatalf("first append after restart got offset %d, want %d", base, len(want))
			}
			want = append(want, []byte("after"))
			_, got := readAll(t, n.log)
			if !slices.EqualFunc(got, want, func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Fatalf("after restart the log holds %d records, want %d", len(got), len(want))
			}
		})
	}
	_ = dir
}

func TestSnapshotInstallOnNewNode(t *testing.T) {
	p := newTestPKI(t)
	compact := func(c *cluster.Config) {
		c.SnapshotThreshold = 20
		c.TrailingLogs = 5
		c.Store.MaxSegmentBytes = 4096 // several segments in the snapshot
	}
	nodes := p.startCluster(t, 2, compact)
	leader := waitLeader(t, nodes...)
	for i := range 60 {
		if _, err := leader.log.AppendBatch(t.Context(), batch(fmt.Sprint("r", i), 5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// The leader's raft log no longer starts at entry 1, so a new node can
	// only catch up through a snapshot.
	n3 := p.startNode(t, "n3", t.TempDir(), "", false, compact)
	t.Cleanup(func() { n3.stop(t) })
	join(t, nodes, n3)
	all := append(nodes, n3)
	appendTo(t, all, batch("after-join", 3))
	waitApplied(t, 303, all...)
	sameLogs(t, all...)
	if st := n3.log.Stats(); st.Segments < 2 {
		t.Fatalf("new node has %d segments; the snapshot should have carried several", st.Segments)
	}
}

func TestLeave(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	gone := followerOf(nodes, leader)
	if err := leader.log.Leave(gone.id); err != nil {
		t.Fatal(err)
	}
	servers, err := leader.log.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 || slices.ContainsFunc(servers, func(s cluster.Server) bool { return s.ID == gone.id }) {
		t.Fatalf("servers after %s left: %+v", gone.id, servers)
	}
	gone.stop(t)
	var rest []*node
	for _, n := range nodes {
		if n != gone {
			rest = append(rest, n)
		}
	}
	appendTo(t, rest, batch("after-leave", 10))
	waitApplied(t, 10, rest...)
	sameLogs(t, rest...)
	// Joining again (as a restart would, through membership) works.
	back := p.startNode(t, gone.id, gone.dir, gone.port.addr, false)
	*gone = *back
	join(t, rest, gone)
	waitApplied(t, 10, nodes...)
	sameLogs(t, nodes...)
}

// A node that served a log before it ran Raft keeps its records: they
// become the start of the replicated log, a node that joins later receives
// them (through the snapshot adoption took), and a joining node with
// records of its own is refused.
func TestAdoptsStoreWithoutRaftState(t *testing.T) {
	dir := t.TempDir()
	st := smallStore(t, filepath.Join(dir, "log"), 30)
	_, held := readAll(t, st)
	st.Close()
	p := newTestPKI(t)

	joiner := t.TempDir()
	smallStore(t, filepath.Join(joiner, "log"), 3).Close()
	pt := p.startPort(t, "n9", "", clustertest.Logger(t))
	if _, err := cluster.New(cluster.Config{NodeID: "n9", DataDir: joiner, Stream: pt.layer}); !errors.Is(err, cluster.ErrExistingStore) {
		t.Fatalf("joining over a store without raft state: %v, want ErrExistingStore", err)
	}
	pt.stop(t)

	n1 := p.startNode(t, "n1", dir, "", true)
	defer func() { n1.stop(t) }()
	waitLeader(t, n1)
	if _, err := os.Stat(filepath.Join(dir, "raft", "adopting")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("adoption marker after New: %v", err)
	}
	off, err := n1.log.AppendBatch(t.Context(), batch("after", 5))
	if err != nil || off != uint64(len(held)) {
		t.Fatalf("first replicated append at %d, %v; want %d", off, err, len(held))
	}
	want := append(slices.Clone(held), batch("after", 5)...)

	// Restarted, it replays over the adopted records without complaint.
	addr := n1.port.addr
	n1.stop(t)
	n1 = p.startNode(t, "n1", dir, addr, false)
	waitLeader(t, n1)
	appendTo(t, []*node{n1}, batch("again", 2))
	want = append(want, batch("again", 2)...)

	n2 := p.startNode(t, "n2", t.TempDir(), "", false)
	defer n2.stop(t)
	join(t, []*node{n1}, n2)
	waitApplied(t, uint64(len(want)), n1, n2)
	for _, n := range []*node{n1, n2} {
		if _, got := readAll(t, n.log); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%s holds %d records, want the %d adopted and appended ones", n.id, len(got), len(want))
		}
	}
}

// TestRetentionWithRaft deletes old store segments on every node while Raft
// keeps working: a node that joins after compaction gets the retained
// segments through a snapshot and starts at the same lowest offset, and a
// restarted node replays over deleted offsets without complaint.
func TestRetentionWithRaft(t *testing.T) {
	p := newTestPKI(t)
	retain := func(c *cluster.Config) {
		c.SnapshotThreshold = 20
		c.TrailingLogs = 5
		c.Store.MaxSegmentBytes = 2048
		c.Store.RetentionBytes = 8192
	}
	nodes := p.startCluster(t, 2, retain)
	for i := range 80 {
		appendTo(t, nodes, batch(fmt.Sprint("r", i), 4))
	}
	waitApplied(t, 320, nodes...)
	leader := waitLeader(t, nodes...)
	if err := leader.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	lowest, _ := leader.log.Bounds()
	if lowest == 0 {
		t.Fatal("retention deleted nothing; the test needs it to")
	}
	reg := prometheus.NewRegistry()
	n3 := p.startNode(t, "n3", t.TempDir(), "", false, retain, func(c *cluster.Config) { c.Registerer = reg })
	t.Cleanup(func() { n3.stop(t) })
	join(t, nodes, n3)
	all := append(nodes, n3)
	end := appendTo(t, all, [][]byte{[]byte("end")})
	waitApplied(t, end+1, all...)
	// Compare what every node still holds above the highest lowest offset.
	var from uint64
	for _, n := range all {
		lo, _ := n.log.Bounds()
		from = max(from, lo)
	}
	if lo3, _ := n3.log.Bounds(); lo3 == 0 {
		t.Fatal("the new node holds offset 0, which retention had deleted everywhere")
	}
	// Raft's log was compacted past its start, so n3 got a snapshot.
	if got := counterValue(t, reg, "proglog_cluster_snapshot_restores_total"); got < 1 {
		t.Fatalf("the new node restored %v snapshots, want at least 1", got)
	}
	read := func(n *node) []string {
		var out []string
		_, next := n.log.Bounds()
		for off := from; off < next; off++ {
			rec, err := n.log.Read(context.Background(), off)
			if err != nil {
				t.Fatalf("%s read %d: %v", n.id, off, err)
			}
			out = append(out, string(rec.Value))
		}
		return out
	}
	want := read(all[0])
	for _, n := range all[1:] {
		if got := read(n); !slices.Equal(got, want) {
			t.Fatalf("%s differs from %s above offset %d", n.id, all[0].id, from)
		}
	}
	// A follower restarts and replays over offsets retention deleted.
	f := all[0]
	if f == leader {
		f = all[1]
	}
	f.stop(t)
	back := p.startNode(t, f.id, f.dir, f.port.addr, false, retain)
	*f = *back
	end = appendTo(t, all, [][]byte{[]byte("end2")})
	waitApplied(t, end+1, all...)
	if _, next := f.log.Bounds(); next != end+1 {
		t.Fatalf("restarted follower ends at %d, want %d", next, end+1)
	}
}

func TestMetrics(t *testing.T) {
	p := newTestPKI(t)
	reg := prometheus.NewRegistry()
	n := p.startNode(t, "solo", t.TempDir(), "", true, func(c *cluster.Config) { c.Registerer = reg })
	waitLeader(t, n)
	if _, err := n.log.AppendBatch(t.Context(), batch("m", 3)); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got["proglog_cluster_is_leader"] != 1 || got["proglog_cluster_raft_applied_index"] < 2 || got["proglog_cluster_apply_failed"] != 0 {
		t.Fatalf("metrics %v", got)
	}
	n.stop(t)
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("%d metric families left registered after Close", len(mfs))
	}
}

// TestFollowerTailAcrossSnapshotInstall follows a follower's committed tail
// with Wait (as ConsumeStream does) while the follower is cut off, the
// leader compacts past it, and the follower then catches up through a
// snapshot install that replaces its store underneath the waiting reader.
func TestFollowerTailAcrossSnapshotInstall(t *testing.T) {
	p := newTestPKI(t)
	compact := func(c *cluster.Config) {
		c.SnapshotThreshold = 10
		c.TrailingLogs = 2
		c.Store.MaxSegmentBytes = 2048
	}
	nodes := p.startCluster(t, 3, compact)
	leader := waitLeader(t, nodes...)
	appendTo(t, nodes, batch("a", 5))
	waitApplied(t, 5, nodes...)
	f := followerOf(nodes, leader)
	// A reader on the follower waits for an offset far ahead.
	const target = 5 + 40*3
	waited := make(chan error, 1)
	go func() { waited <- f.log.Wait(t.Context(), target-1) }()

	f.port.layer.Isolate(true)
	var rest []*node
	for _, n := range nodes {
		if n != f {
			rest = append(rest, n)
		}
	}
	for i := range 40 {
		appendTo(t, rest, batch(fmt.Sprint("b", i), 3))
	}
	if err := waitLeader(t, rest...).log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		t.Fatalf("the isolated follower's reader returned early: %v", err)
	default:
	}
	f.port.layer.Isolate(false)
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("wait across the snapshot install: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower's reader never saw the records installed by the snapshot")
	}
	rec, err := f.log.Read(context.Background(), target-1)
	if err != nil || string(rec.Value) != "b39-2" {
		t.Fatalf("follower read %q, %v; want b39-2", rec.Value, err)
	}
	waitApplied(t, target, nodes...)
	sameLogs(t, nodes...)
}

// TestRejoinAtNewAddress restarts a follower on another port: Join updates
// its address and it catches up.
func TestRejoinAtNewAddress(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	appendTo(t, nodes, batch("a", 10))
	leader := waitLeader(t, nodes...)
	f := followerOf(nodes, leader)
	f.stop(t)
	moved := p.startNode(t, f.id, f.dir, "", false)
	*f = *moved
	join(t, nodes, f)
	end := appendTo(t, nodes, batch("b", 10))
	waitApplied(t, end+10, nodes...)
	sameLogs(t, nodes...)
	servers, err := leader.log.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(servers, func(s cluster.Server) bool { return s.ID == f.id && s.RPCAddr == f.port.addr }) || len(servers) != 3 {
		t.Fatalf("servers %+v, want %s at %s", servers, f.id, f.port.addr)
	}
}

// serviceLog mirrors service.Log from contracts.md; *cluster.Log must satisfy
// it (importing service here would tie this package's tests to its state).
type serviceLog interface {
	AppendRecords(ctx context.Context, recs []logstore.Record) (uint64, error)
	Read(ctx context.Context, offset uint64) (logstore.Record, error)
	ReadBatch(ctx context.Context, offset uint64, maxRecords, maxBytes int, dst []logstore.Record) ([]logstore.Record, error)
	Bounds() (lowest, next uint64)
	Wait(ctx context.Context, offset uint64) error
	Stats() logstore.Stats
	OffsetForTime(ctx context.Context, t time.Time) (uint64, error)
}

var _ serviceLog = (*cluster.Log)(nil)

func TestTransferLeadership(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	appendTo(t, nodes, batch("a", 5))
	old := waitLeader(t, nodes...)
	if err := old.log.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, n := range nodes {
			if n != old && n.log.IsLeader() {
				return true
			}
		}
		return false
	})
	if err := old.log.TransferLeadership(); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("transfer on a follower: %v, want ErrNotLeader", err)
	}
	end := appendTo(t, nodes, batch("b", 5))
	waitApplied(t, end+5, nodes...)
	sameLogs(t, nodes...)
}

// TestAppendDuringLeadershipTransfer appends on the leader while it hands
// leadership over. Raft refuses entries during a transfer before it logs
// them; an append must wait the transfer out and then either be
// acknowledged or refused with *NotLeaderError (nothing written), never
// end as ErrUnknownOutcome. To a follower that is down the transfer fails
// after an election timeout and the leader keeps leading, so every append
// is acknowledged.
func TestAppendDuringLeadershipTransfer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		targetDown bool
	}{
		{"to a live follower", false},
		{"to a follower that is down", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t)
			nodes := p.startCluster(t, 3)
			leader := waitLeader(t, nodes...)
			target := followerOf(nodes, leader)
			waitApplied(t, appendTo(t, nodes, batch("a", 5))+5, nodes...)
			if tc.targetDown {
				target.stop(t)
			}
			transferred := make(chan error, 1)
			go func() { transferred <- leader.log.TransferLeadershipTo(target.id) }()
			var acked [][]byte
			refused := 0
			var transferErr error
			for i, transferring := 0, true; transferring; i++ {
				v := []byte(fmt.Sprint("b", i))
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				_, err := leader.log.Append(ctx, v)
				cancel()
				var nle *cluster.NotLeaderError
				switch {
				case err == nil:
					acked = append(acked, v)
				case errors.As(err, &nle) && !tc.targetDown:
					if nle.LeaderID != target.id {
						t.Fatalf("append %d refused naming leader %q, want %q", i, nle.LeaderID, target.id)
					}
					refused++
				default:
					t.Fatalf("append %d during the transfer: %v", i, err)
				}
				select {
				case transferErr = <-transferred:
					transferring = false
				default:
					if refused > 0 { // leadership has moved: the transfer is ending
						transferErr, transferring = <-transferred, false
					}
				}
			}
			if tc.targetDown != (transferErr != nil) {
				t.Fatalf("transfer to %s: %v", target.id, transferErr)
			}
			if tc.targetDown && !leader.log.IsLeader() {
				t.Fatalf("%s lost leadership to a transfer that failed", leader.id)
			}
			live := slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n.log == nil })
			end := appendTo(t, live, batch("c", 1))
			waitApplied(t, end+1, live...)
			got := sameLogs(t, live...)
			for _, v := range acked {
				if !slices.ContainsFunc(got, func(g []byte) bool { return bytes.Equal(g, v) }) {
					t.Fatalf("acknowledged %q is not in the log", v)
				}
			}
			t.Logf("%d appends acknowledged during the transfer, %d refused", len(acked), refused)
		})
	}
}

// counterValue reads a counter from reg (0 when it has no samples).
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestSetRetention(t *testing.T) {
	p := newTestPKI(t)
	small := func(c *cluster.Config) { c.Store.MaxSegmentBytes = 1024 }
	nodes := p.startCluster(t, 1, small)
	end := appendTo(t, nodes, batch(strings.Repeat("v", 100), 100))
	waitApplied(t, end+1, nodes...)
	if err := nodes[0].log.SetRetention(3000, 0); err != nil {
		t.Fatal(err)
	}
	if lo, _ := nodes[0].log.Bounds(); lo == 0 {
		t.Fatal("retention set at run time deleted nothing")
	}
}
