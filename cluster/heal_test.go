package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// smallSegments gives the store (and Raft's log) several segments.
func smallSegments(c *cluster.Config) { c.Store.MaxSegmentBytes = 2048 }

// TestSnapshotLinksTheStore checks that a snapshot holds a header and hard
// links to the store's sealed segments (no record copied), and that the
// node restarts from it and a new node installs it.
func TestSnapshotLinksTheStore(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 1, smallSegments)
	n := nodes[0]
	for i := range 30 {
		if _, err := n.log.AppendBatch(t.Context(), batch(fmt.Sprint("s", i), 5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	snap := latestSnapshot(t, n.dir)
	var meta struct {
		Size  int64
		Files []logstore.LinkedFile
	}
	b, err := os.ReadFile(filepath.Join(snap, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta.Files) < 2 {
		t.Fatalf("snapshot links %d files, want the store's several segments", len(meta.Files))
	}
	st, err := os.Stat(filepath.Join(snap, "state.bin"))
	if err != nil || st.Size() != 44 { // the header, no catalogue: the node keeps none
		t.Fatalf("state.bin: %v, %v; want the header alone", st, err)
	}
	size := int64(44)
	for _, f := range meta.Files {
		linked, err := os.Stat(filepath.Join(snap, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		own, err := os.Stat(filepath.Join(n.dir, "log", f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(linked, own) {
			t.Fatalf("snapshot file %s is a copy, not a link to the store's", f.Name)
		}
		size += f.Size
	}
	if meta.Size != size {
		t.Fatalf("snapshot size %d, its parts add up to %d", meta.Size, size)
	}

	// A node that joins now gets every record through the snapshot.
	n2 := p.startNode(t, "n2", t.TempDir(), "", false, smallSegments)
	t.Cleanup(func() { n2.stop(t) })
	nodes = append(nodes, n2)
	join(t, nodes[:1], n2)
	appendTo(t, nodes, batch("after", 2))
	waitApplied(t, 152, nodes...)
	sameLogs(t, nodes...)
}

func latestSnapshot(t *testing.T, dataDir string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, "raft", "snapshots", "*-*-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no snapshot in %s: %v", dataDir, err)
	}
	slices.SortFunc(dirs, func(a, b string) int {
		var ta, ia, tb, ib uint64
		fmt.Sscanf(filepath.Base(a), "%d-%d", &ta, &ia)
		fmt.Sscanf(filepath.Base(b), "%d-%d", &tb, &ib)
		return int(ia) - int(ib)
	})
	return dirs[len(dirs)-1]
}

// TestStoreHealsFromRaft damages a stopped node's store or Raft log the
// ways a machine crash, a rotten disk or an operator can, and checks that
// the restarted node makes the store agree with its Raft log again by
// itself: it serves every record Raft has, without duplicates, takes
// appends, and never fails to apply.
func TestStoreHealsFromRaft(t *testing.T) {
	tests := []struct {
		name     string
		snapshot bool // after the 10th of 20 batches
		damage   func(t *testing.T, dir string)
		lost     int // records of the last batch Raft's log lost
	}{
		// What a machine crash can do to the store's active segment (it is
		// synced every minute and at its end: Raft's log is the durable copy).
		{"torn store tail", false, func(t *testing.T, dir string) { truncateBy(t, activeStore(t, filepath.Join(dir, "log")), 100) }, 0},
		{"store tail lost past the snapshot", true, func(t *testing.T, dir string) {
			truncateBy(t, activeStore(t, filepath.Join(dir, "log")), 3000)
		}, 0},
		{"damage inside the active store segment", true, func(t *testing.T, dir string) {
			active := activeStore(t, filepath.Join(dir, "log"))
			b, err := os.ReadFile(active)
			if err != nil {
				t.Fatal(err)
			}
			b[40] ^= 0xff // inside the first frame; later frames stay valid
			if err := os.WriteFile(active, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0},
		// What a rotten disk or an operator can do.
		{"flipped record, no snapshot", false, func(t *testing.T, dir string) { flipValue(t, dir, "v3-2") }, 0},
		{"flipped record past the snapshot", true, func(t *testing.T, dir string) { flipValue(t, dir, "v15-2") }, 0},
		{"raft log lost its last entry, no snapshot", false, tearRaftLog, 5},
		{"raft log lost its last entry past the snapshot", true, tearRaftLog, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t)
			dir := t.TempDir()
			n := p.startNode(t, "solo", dir, "", true, smallSegments)
			waitLeader(t, n)
			var want [][]byte
			for i := range 20 {
				vals := batch(fmt.Sprint("v", i), 5)
				want = append(want, vals...)
				if _, err := n.log.AppendBatch(t.Context(), vals); err != nil {
					t.Fatal(err)
				}
				if tt.snapshot && i == 9 {
					if err := n.log.Snapshot(); err != nil {
						t.Fatal(err)
					}
				}
			}
			addr := n.port.addr
			n.stop(t)
			tt.damage(t, dir)
			want = want[:len(want)-tt.lost]

			n = p.startNode(t, "solo", dir, addr, true, smallSegments)
			defer n.stop(t)
			if err := n.log.CatchUp(t.Context()); err != nil {
				t.Fatal(err)
			}
			off, err := n.log.Append(t.Context(), []byte("after"))
			if err != nil || off != uint64(len(want)) {
				t.Fatalf("append after restart: offset %d, %v; want offset %d", off, err, len(want))
			}
			want = append(want, []byte("after"))
			_, got := readAll(t, n.log)
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("healed store holds %d records, want %d:\n%q\nwant\n%q", len(got), len(want), got, want)
			}
		})
	}
}

// flipValue flips a byte of the record whose value is v in the node's store.
func flipValue(t *testing.T, dir, v string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "log", "*.store"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte(v))
		if i < 0 {
			continue
		}
		b[i] ^= 0x20
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no record %q in %s", v, dir)
}

// tearRaftLog cuts the last bytes of Raft's log: its last entry is torn,
// and Open cuts it off, while the store still holds its records.
func tearRaftLog(t *testing.T, dir string) {
	t.Helper()
	truncateBy(t, activeStore(t, filepath.Join(dir, "raft", "log")), 7)
}

// TestCompactionKeepsBytesNotEntries: with entries of a few KiB, raft's
// default TrailingLogs (10240 entries) would keep the whole log; the byte
// limits snapshot it and compact it to about TrailingBytes.
func TestCompactionKeepsBytesNotEntries(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 1, func(c *cluster.Config) {
		c.Store.MaxSegmentBytes = 4096 // Raft's log segments too
		c.SnapshotBytes = 16 << 10
		c.TrailingBytes = 8 << 10
	})
	n := nodes[0]
	value := bytes.Repeat([]byte("x"), 100)
	vals := slices.Repeat([][]byte{value}, 20) // a ~2 KiB entry
	for range 200 {
		if _, err := n.log.AppendBatch(t.Context(), vals); err != nil {
			t.Fatal(err)
		}
	}
	const bound = 200 << 10 // minTrailingLogs (64) entries and a few segments; all 200 entries are ~420 KiB
	deadline := time.Now().Add(20 * time.Second)
	for {
		size := dirSize(t, filepath.Join(n.dir, "raft", "log"))
		if size < bound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft's log still holds %d bytes, want less than %d after compaction", size, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".store") {
			n += fi.Size()
		}
	}
	return n
}

// TestLeaderThatCannotApplyStepsDown: a leader whose store fails for good
// hands leadership over and stops standing for election, and the cluster
// goes on taking appends: when the new leader goes too, the third node,
// which holds every entry, takes over, never the one that cannot apply (it
// still votes).
func TestLeaderThatCannotApplyStepsDown(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	appendTo(t, nodes, batch("before", 3))
	cluster.FailWriter(leader.log)
	if _, err := leader.log.Append(t.Context(), []byte("on the broken leader")); !errors.Is(err, cluster.ErrApplyFailed) && !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("append on a leader that cannot apply: %v, want ErrApplyFailed (or not-leader, once it stepped down)", err)
	}
	if err := leader.log.CanWrite(); !errors.Is(err, cluster.ErrApplyFailed) {
		t.Errorf("CanWrite on a node that cannot apply = %v, want ErrApplyFailed (health: proglog.Writes NOT_SERVING)", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for leader.log.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the leader that cannot apply still leads")
		}
		time.Sleep(20 * time.Millisecond)
	}
	others := slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n == leader })
	newLeader := waitLeader(t, others...)
	if _, err := newLeader.log.Append(t.Context(), []byte("after")); err != nil {
		t.Fatalf("append on the new leader: %v", err)
	}
	if err := newLeader.log.CanWrite(); err != nil {
		t.Errorf("CanWrite on the new leader = %v", err)
	}
	third := others[0]
	if third == newLeader {
		third = others[1]
	}
	// The third holds every entry, so it can be elected.
	waitApplied(t, 5, third)
	if err := newLeader.log.Close(); err != nil {
		t.Fatal(err)
	}
	newLeader.port.stop(t)
	newLeader.log = nil
	deadline = time.Now().Add(20 * time.Second)
	for !third.log.IsLeader() {
		if leader.log.IsLeader() {
			t.Fatal("the node that cannot apply was elected")
		}
		if time.Now().After(deadline) {
			t.Fatal("no new leader with the vote of the node that cannot apply")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := third.log.Append(t.Context(), []byte("after the second failover")); err != nil {
		t.Fatalf("append on the third leader: %v", err)
	}
	if err := leader.log.Close(); !errors.Is(err, logstore.ErrCorrupt) {
		t.Errorf("close of the node that cannot apply: %v, want its store's failure", err)
	}
	leader.port.stop(t)
	leader.log = nil
}

// TestCannotApplyStandsAsLastResort: when the only live voter that holds
// every committed entry is the node that cannot apply, it stands for
// election after all (a few election timeouts without a leader), and once
// elected hands leadership to the other, which it catches up first; the
// cluster takes appends again.
func TestCannotApplyStandsAsLastResort(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	appendTo(t, nodes, batch("before", 3))
	waitApplied(t, 3, nodes...)
	leader := waitLeader(t, nodes...) // settled: it committed the batch
	broken, lagging := followerOf(nodes, leader), (*node)(nil)
	for _, n := range nodes {
		if n != leader && n != broken {
			lagging = n
		}
	}
	cluster.FailWriter(broken.log)
	// The lagging node is down while the leader and the broken node commit
	// more; then the leader goes, and the lagging node comes back without
	// those entries: it cannot be elected.
	id, dir, addr := lagging.id, lagging.dir, lagging.port.addr
	lagging.stop(t)
	if _, err := leader.log.AppendBatch(t.Context(), batch("while-down", 5)); err != nil {
		t.Fatalf("append with a quorum of the leader and the broken node: %v", err)
	}
	// The broken node finds out when it applies the new entries.
	for deadline := time.Now().Add(10 * time.Second); !errors.Is(broken.log.CanWrite(), cluster.ErrApplyFailed); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the broken node did not fail to apply")
		}
	}
	if !leader.log.IsLeader() {
		t.Fatal("leadership moved during the setup; the scenario needs the leader to go last")
	}
	leader.stop(t)
	lagging = p.startNode(t, id, dir, addr, false)
	t.Cleanup(func() { lagging.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for !lagging.log.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader: the node that cannot apply did not stand as the last resort, or did not hand over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := lagging.log.Append(t.Context(), []byte("after")); err != nil {
		t.Fatalf("append on the new leader: %v", err)
	}
	waitApplied(t, 9, lagging)
	if err := broken.log.Close(); !errors.Is(err, logstore.ErrCorrupt) {
		t.Errorf("close of the node that cannot apply: %v, want its store's failure", err)
	}
	broken.port.stop(t)
	broken.log = nil
}

// TestDamagedSnapshotIsNotSent: a leader whose snapshot links a segment
// with a rotten record finds it while sending the snapshot to a follower
// that needs one, says so and hands leadership over; the follower gets a
// good snapshot from the new leader.
func TestDamagedSnapshotIsNotSent(t *testing.T) {
	p := newTestPKI(t)
	opts := func(c *cluster.Config) {
		c.Store.MaxSegmentBytes = 2048
		c.TrailingLogs = 5
		c.TrailingBytes = -1
	}
	nodes := p.startCluster(t, 3, opts)
	leader := waitLeader(t, nodes...)
	for i := range 20 {
		appendTo(t, nodes, batch(fmt.Sprint("a", i), 5))
	}
	if err := leader.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// Rot a record of a segment the leader's snapshot links (the store's
	// file is the same one).
	var meta struct{ Files []logstore.LinkedFile }
	snap := latestSnapshot(t, leader.dir)
	b, err := os.ReadFile(filepath.Join(snap, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil || len(meta.Files) == 0 {
		t.Fatalf("snapshot meta: %v, %d files", err, len(meta.Files))
	}
	f, err := os.OpenFile(filepath.Join(snap, meta.Files[0].Name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	follower := followerOf(nodes, leader)
	addr, dir := follower.port.addr, follower.dir
	follower.stop(t)
	var live []*node
	for _, n := range nodes {
		if n != follower {
			live = append(live, n)
		}
	}
	for i := range 60 { // past the leader's compaction point, so the follower needs a snapshot
		appendTo(t, live, batch(fmt.Sprint("b", i), 5))
	}
	if err := waitLeader(t, live...).log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	restarted := p.startNode(t, follower.id, dir, addr, false, opts)
	for i, n := range nodes {
		if n == follower {
			nodes[i] = restarted
		}
	}
	waitApplied(t, 400, restarted)
	good := followerOf(live, leader)
	_, want := readAll(t, good.log)
	_, got := readAll(t, restarted.log)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("the restarted follower holds %d records, the good node %d; they differ", len(got), len(want))
	}
	if leader.log.IsLeader() {
		t.Fatal("the node with the damaged snapshot still leads")
	}
}

// peers lets test nodes read each other's records by address, as a node's
// FetchRecord reads a peer's through Consume.
type peers struct{ logs sync.Map } // addr → *cluster.Log

func (p *peers) fetch(ctx context.Context, addr string, offset uint64) (logstore.Record, error) {
	l, ok := p.logs.Load(addr)
	if !ok {
		return logstore.Record{}, fmt.Errorf("no node at %s", addr)
	}
	return l.(*cluster.Log).Read(ctx, offset)
}

// TestDamagedRecordHealsFromAPeer: a flipped byte in a record that only the
// store holds any more (below a snapshot, compacted out of Raft's log) is
// read as DataLoss at first, then healed in place from a peer's copy: the
// node reads the record the others hold, with its key, headers and time.
func TestDamagedRecordHealsFromAPeer(t *testing.T) {
	p := newTestPKI(t)
	var reg peers
	opts := func(c *cluster.Config) {
		c.Store.MaxSegmentBytes = 2048
		c.TrailingLogs = 5
		c.TrailingBytes = -1
		c.FetchRecord = reg.fetch
	}
	nodes := p.startCluster(t, 3, opts)
	for _, n := range nodes {
		reg.logs.Store(n.port.addr, n.log)
	}
	for i := range 20 {
		recs := keyedBatch(fmt.Sprint("a", i), 5)
		appendRecordsTo(t, waitLeader(t, nodes...), recs)
	}
	waitApplied(t, 100, nodes...)
	leader := waitLeader(t, nodes...)
	victim := followerOf(nodes, leader)
	if err := victim.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	good := allRecords(t, leader)
	flipValue(t, victim.dir, "a2-3")
	const off = 13 // batch a2, record 3
	if string(good[off].Value) != "a2-3" {
		t.Fatalf("record %d is %q", off, good[off].Value)
	}
	// Nothing else reads the record, so the first read finds the damage,
	// and starts the healing.
	_, err := victim.log.Read(t.Context(), off)
	if !errors.Is(err, logstore.ErrCorrupt) {
		t.Fatalf("read of the damaged record: %v, want ErrCorrupt", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, err := victim.log.Read(t.Context(), off)
		if err == nil {
			sameRecordsOn(t, good, victim)
			if rec.Time.IsZero() || !bytes.Equal(rec.Key, good[off].Key) {
				t.Fatalf("healed record %+v", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %d still reads %v", off, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The snapshot that links the segment reads whole too: a restart
	// restores from it and serves every record.
	addr, dir := victim.port.addr, victim.dir
	victim.stop(t)
	restarted := p.startNode(t, victim.id, dir, addr, false, opts)
	for i, n := range nodes {
		if n == victim {
			nodes[i] = restarted
		}
	}
	waitApplied(t, 100, restarted)
	sameRecordsOn(t, good, restarted)
}
