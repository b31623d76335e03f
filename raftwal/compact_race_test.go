package raftwal

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// TestCompactDuringAppend: an acknowledged entry must stay readable while
// the WAL compacts. Two empty logs append at once, x a record that fills
// its segment and y one that starts the next, while Compact runs in a
// loop. A compaction that reads the logs' pins after their records are
// durable but before x has applied its record to its state sees no pin
// for x, and deletes x's segment (below y's pin, or below the WAL's end
// when no log has one). Under -race this interleaving comes within a few
// rounds.
func TestCompactDuringAppend(t *testing.T) {
	const segmentBytes = 4096
	h := newTestWAL(t, 2, segmentBytes)
	x, y := h.logs[0], h.logs[1]
	mx, my := newModel(), newModel()
	stop := make(chan struct{})
	var compactor sync.WaitGroup
	compactor.Go(func() { compactUntil(t, h.w, stop, 0) })
	defer compactor.Wait()
	defer close(stop)

	big := bytes.Repeat([]byte("x"), segmentBytes)
	deadline := time.Now().Add(time.Second)
	for round := 0; round < 100 && time.Now().Before(deadline); round++ {
		var appends sync.WaitGroup
		var errX, errY error
		appends.Go(func() { _, errX = x.AppendBatch(ctx, [][]byte{big}) })
		appends.Go(func() { _, errY = y.AppendBatch(ctx, [][]byte{[]byte("y")}) })
		appends.Wait()
		if errX != nil || errY != nil {
			t.Fatalf("round %d: AppendBatch: %v, %v", round, errX, errY)
		}
		mx.append([][]byte{big})
		my.append([][]byte{[]byte("y")})
		checkLog(t, "log x", x, mx)
		checkLog(t, "log y", y, my)
		// Both logs empty again (Raft after a snapshot): no pins.
		for _, lm := range []struct {
			l *Log
			m *model
		}{{x, mx}, {y, my}} {
			if err := lm.l.TruncateBefore(lm.m.next); err != nil {
				t.Fatal(err)
			}
			lm.m.truncateBefore(lm.m.next)
		}
	}
}
