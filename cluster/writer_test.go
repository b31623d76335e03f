package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// An append is acknowledged once applied, before the store writer wrote
// it: a read right after the acknowledgement still finds the record, on
// the leader and on a follower, however many appends race with it.
func TestReadYourWriteAfterAck(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				v := fmt.Appendf(nil, "w%d-%d", w, i)
				off, err := leader.log.Append(t.Context(), v)
				if err != nil {
					t.Error(err)
					return
				}
				rec, err := leader.log.Read(off)
				if err != nil || !bytes.Equal(rec.Value, v) {
					t.Errorf("read %d right after its ack: %q, %v; want %q", off, rec.Value, err, v)
					return
				}
				if _, next := leader.log.Bounds(); next <= off {
					t.Errorf("Bounds next %d right after the ack of %d", next, off)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitApplied(t, 200, nodes...)
	sameLogs(t, nodes...)
}

// When the store cannot write applied records, the node says so on reads
// and appends instead of serving a hole, and a restart rebuilds the store
// from Raft's log: every acknowledged record is there.
func TestStoreWriteFailureRepairedByRestart(t *testing.T) {
	p := newTestPKI(t)
	n := p.startNode(t, "n1", t.TempDir(), "", true)
	defer func() { n.stop(t) }()
	waitLeader(t, n)
	want := batch("before", 10)
	appendTo(t, []*node{n}, want)
	if err := cluster.BreakStore(n.log); err != nil {
		t.Fatal(err)
	}
	// The entry commits (Raft's log is fine) and is acknowledged or, once the
	// writer's failure is known, reported as applied nowhere here.
	var failed bool
	for i := range 20 {
		v := fmt.Appendf(nil, "after-%d", i)
		off, err := n.log.Append(t.Context(), v)
		if err != nil {
			if !errors.Is(err, cluster.ErrApplyFailed) {
				t.Fatalf("append after the store broke: %v, want ErrApplyFailed", err)
			}
			failed = true
			break
		}
		want = append(want, v)
		if _, err := n.log.Read(off); !errors.Is(err, cluster.ErrApplyFailed) && !errors.Is(err, cluster.ErrClosed) {
			t.Fatalf("read of %d, never written: %v, want ErrApplyFailed", off, err)
		}
	}
	if !failed {
		t.Fatal("20 appends after the store broke all succeeded")
	}
	addr, dir := n.port.addr, n.dir
	if err := n.log.Close(); !errors.Is(err, cluster.ErrApplyFailed) && !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("close with a broken store: %v, want the store's failure", err)
	}
	n.port.stop(t)
	n.log = nil
	n = p.startNode(t, "n1", dir, addr, false)
	waitLeader(t, n)
	// The append that failed may have committed: its outcome is unknown, so
	// the log holds the acknowledged records and perhaps that one.
	waitApplied(t, uint64(len(want)), n)
	_, got := readAll(t, n.log)
	if len(got) < len(want) || !slices.EqualFunc(got[:len(want)], want, bytes.Equal) || len(got) > len(want)+1 {
		t.Fatalf("after restart the log holds %d records, want the %d acknowledged (and at most the unknown one)", len(got), len(want))
	}
}
