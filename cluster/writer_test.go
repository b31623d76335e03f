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
				rec, err := leader.log.Read(context.Background(), off)
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

// When the store cannot write applied records (here: it is closed under the
// writer, as a failing disk would fail its writes), the writer reopens it
// and writes them again by itself: every acknowledged record is read back,
// without a restart, and after one.
func TestStoreWriteFailureHealsByItself(t *testing.T) {
	p := newTestPKI(t)
	n := p.startNode(t, "n1", t.TempDir(), "", true)
	defer func() { n.stop(t) }()
	waitLeader(t, n)
	want := batch("before", 10)
	appendTo(t, []*node{n}, want)
	if err := cluster.BreakStore(n.log); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		v := fmt.Appendf(nil, "after-%d", i)
		off, err := n.log.Append(t.Context(), v)
		if err != nil {
			t.Fatalf("append after the store broke: %v", err)
		}
		want = append(want, v)
		if rec, err := n.log.Read(context.Background(), off); err != nil || !bytes.Equal(rec.Value, v) {
			t.Fatalf("read of %d: %q, %v; want %q", off, rec.Value, err, v)
		}
	}
	_, got := readAll(t, n.log)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("the healed log holds %d records, want the %d acknowledged", len(got), len(want))
	}
	addr, dir := n.port.addr, n.dir
	n.stop(t)
	n = p.startNode(t, "n1", dir, addr, false)
	waitLeader(t, n)
	waitApplied(t, uint64(len(want)), n)
	if _, got := readAll(t, n.log); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("after restart the log holds %d records, want the %d acknowledged", len(got), len(want))
	}
}

// The store writer gathers the entries queued behind it into one store
// append until they hold 4 MiB of records, not only 4096 records: large
// records would otherwise make one frame buffer of every entry queued
// (up to 64 entries of 4 MiB).
func TestStoreWritesBoundedByBytes(t *testing.T) {
	p := newTestPKI(t)
	n := p.startNode(t, "n1", t.TempDir(), "", true)
	defer n.stop(t)
	waitLeader(t, n)
	step, done := cluster.StepWriter(n.log)
	defer done()
	const (
		entries    = 12
		perEntry   = 4
		recordSize = 256 << 10 // an entry is 1 MiB of records
	)
	value := bytes.Repeat([]byte{'x'}, recordSize)
	var base uint64
	for i := range entries {
		values := make([][]byte, perEntry)
		for j := range values {
			values[j] = value
		}
		b, err := n.log.AppendBatch(t.Context(), values)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			base = b
		}
	}
	end := base + entries*perEntry
	writes := 0
	for at := cluster.StoreNext(n.log); at < end; writes++ {
		step()
		var now uint64
		waitFor(t, func() bool { now = cluster.StoreNext(n.log); return now > at })
		// 4 MiB, and the entry that passes it.
		if got, most := now-at, uint64((4<<20)/recordSize+perEntry); got > most {
			t.Fatalf("one store write took %d records of %d B, want at most %d", got, recordSize, most)
		}
		at = now
	}
	if writes < 3 {
		t.Fatalf("%d MiB of records written in %d store writes, want at least 3", entries*perEntry*recordSize>>20, writes)
	}
	done()
	_, got := readAll(t, n.log)
	if uint64(len(got)) != end {
		t.Fatalf("the store holds %d records, want %d", len(got), end)
	}
}

// TestReadsEndWithTheirContext: while the store lags behind what is
// committed, a read of a committed record waits for it, but only until the
// caller's context ends (not the writer's 10 s limit), and then the record
// is there.
func TestReadsEndWithTheirContext(t *testing.T) {
	p := newTestPKI(t)
	n := p.startNode(t, "n1", t.TempDir(), "", true)
	defer func() { n.stop(t) }()
	waitLeader(t, n)
	release := cluster.HoldWriter(n.log)
	defer func() {
		if release != nil {
			release()
		}
	}()
	off, err := n.log.Append(t.Context(), []byte("lagging"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Read", func(ctx context.Context) error { _, err := n.log.Read(ctx, off); return err }},
		{"ReadBatch", func(ctx context.Context) error { _, err := n.log.ReadBatch(ctx, off, 10, 0, nil); return err }},
		{"OffsetForTime", func(ctx context.Context) error { _, err := n.log.OffsetForTime(ctx, time.Now()); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			if err := tc.call(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want the context's deadline", err)
			}
		})
	}
	release()
	release = nil
	if rec, err := n.log.Read(t.Context(), off); err != nil || string(rec.Value) != "lagging" {
		t.Fatalf("after the writer caught up: %q, %v", rec.Value, err)
	}
}
