package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// skewedClock is a node's clock, set by the test.
type skewedClock struct{ ns atomic.Int64 }

func (c *skewedClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

func withClock(c *skewedClock) nodeOpt {
	return func(cfg *cluster.Config) { cfg.Now = c.now }
}

func keyedBatch(prefix string, n int) []logstore.Record {
	recs := make([]logstore.Record, n)
	for i := range recs {
		recs[i] = logstore.Record{
			Key:     fmt.Appendf(nil, "%s-key-%d", prefix, i%3),
			Headers: []logstore.Header{{Key: "n", Value: fmt.Appendf(nil, "%d", i)}, {Key: "n", Value: nil}},
			Value:   fmt.Appendf(nil, "%s-%d", prefix, i),
		}
	}
	return recs
}

// appendRecordsTo appends recs through leader, which must lead.
func appendRecordsTo(t *testing.T, leader *node, recs []logstore.Record) uint64 {
	t.Helper()
	base, err := leader.log.AppendRecords(t.Context(), recs)
	if err != nil {
		t.Fatalf("append on %s: %v", leader.id, err)
	}
	return base
}

// allRecords reads a node's whole store.
func allRecords(t *testing.T, n *node) []logstore.Record {
	t.Helper()
	lowest, next := n.log.Bounds()
	var out []logstore.Record
	for off := lowest; off < next; {
		recs, err := n.log.ReadBatch(context.Background(), off, 1000, 0, nil)
		if err != nil {
			t.Fatalf("%s: read %d: %v", n.id, off, err)
		}
		out = append(out, recs...)
		off += uint64(len(recs))
	}
	return out
}

func sameRecordsOn(t *testing.T, want []logstore.Record, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		got := allRecords(t, n)
		if len(got) != len(want) {
			t.Fatalf("%s holds %d records, want %d", n.id, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			same := g.Offset == w.Offset && g.Time.Equal(w.Time) && bytes.Equal(g.Key, w.Key) &&
				bytes.Equal(g.Value, w.Value) && len(g.Headers) == len(w.Headers)
			for j := 0; same && j < len(w.Headers); j++ {
				same = g.Headers[j].Key == w.Headers[j].Key && bytes.Equal(g.Headers[j].Value, w.Headers[j].Value)
			}
			if !same {
				t.Fatalf("%s: record %d = %+v, want %+v", n.id, i, g, w)
			}
		}
	}
}

// TestRecordTimesFromTheLeader: every node stores the key, headers and the
// time the leader proposed, so every node returns the same record; a new
// leader whose clock is behind (after a restart of every node, whoever
// wins) does not make times go back, since the floor travels in snapshots.
func TestRecordTimesFromTheLeader(t *testing.T) {
	p := newTestPKI(t)
	base := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	clocks := []*skewedClock{{}, {}, {}}
	for i, c := range clocks {
		c.ns.Store(base.Add(-time.Duration(i) * time.Hour).UnixNano()) // n1 ahead of n2 ahead of n3
	}
	var nodes []*node
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop(t)
		}
	})
	for i := range clocks {
		nd := p.startNode(t, fmt.Sprintf("n%d", i+1), t.TempDir(), "", i == 0, withClock(clocks[i]))
		nodes = append(nodes, nd)
		if i == 0 {
			waitLeader(t, nd)
		} else {
			join(t, nodes[:i], nd)
		}
	}
	leader := waitLeader(t, nodes...)
	if leader != nodes[0] {
		t.Fatalf("%s leads, want n1", leader.id)
	}
	var want []logstore.Record
	// appendAt appends recs through leader and checks that every node holds
	// everything so far, these with the time at.
	appendAt := func(leader *node, recs []logstore.Record, at time.Time) {
		t.Helper()
		appendRecordsTo(t, leader, recs)
		for _, r := range recs {
			r.Offset, r.Time = uint64(len(want)), at
			want = append(want, r)
		}
		waitApplied(t, uint64(len(want)), nodes...)
		sameRecordsOn(t, want, nodes...)
	}
	appendAt(leader, keyedBatch("a", 5), base)

	// The leader's clock steps back an hour (as a new leader's may be
	// behind): its records keep the floor.
	clocks[0].ns.Add(-int64(time.Hour))
	appendAt(leader, keyedBatch("b", 3), base)

	// The floor travels in snapshots: snapshot everywhere, restart every
	// node (each replays from its snapshot), append behind again.
	for _, n := range nodes {
		if err := n.log.Snapshot(); err != nil {
			t.Fatalf("%s: snapshot: %v", n.id, err)
		}
	}
	for i, n := range nodes {
		dir, addr := n.dir, n.port.addr
		n.stop(t)
		nodes[i] = p.startNode(t, n.id, dir, addr, false, withClock(clocks[i]))
	}
	appendAt(waitLeader(t, nodes...), keyedBatch("c", 2), base)

	// Lookups by time agree with the records on every node.
	for _, n := range nodes {
		off, err := n.log.OffsetForTime(t.Context(), base)
		if err != nil || off != 0 {
			t.Fatalf("%s: OffsetForTime(base) = %d, %v", n.id, off, err)
		}
		off, err = n.log.OffsetForTime(t.Context(), base.Add(time.Nanosecond))
		if err != nil || off != uint64(len(want)) {
			t.Fatalf("%s: OffsetForTime(after) = %d, %v; want %d", n.id, off, err, len(want))
		}
	}

	// The leader's clock moving on moves the times on.
	clocks[0].ns.Store(base.Add(time.Minute).UnixNano())
	clocks[1].ns.Store(base.Add(time.Minute).UnixNano())
	clocks[2].ns.Store(base.Add(time.Minute).UnixNano())
	appendAt(waitLeader(t, nodes...), keyedBatch("d", 1), base.Add(time.Minute))
}
