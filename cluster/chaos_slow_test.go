//go:build slow

package cluster_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/proglog/proglog/cluster"
)

// TestRepeatedLeaderCrashes closes the leader five times under a steady
// produce load (restarting it each time), then checks that every
// acknowledged record is on every node at its offset, that all logs are
// identical, and that the history is linearizable. It logs the time from
// each crash to the first write acknowledged by a new leader, with the
// production default Raft timings.
func TestRepeatedLeaderCrashes(t *testing.T) {
	p := newTestPKI(t)
	defaults := func(c *cluster.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 0, 0, 0, 0
		c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval = 200, 50, time.Second
	}
	nodes := p.startCluster(t, 3, defaults)
	h := &history{start: time.Now(), acked: map[uint64]string{}}
	var mu sync.Mutex // guards logs
	logs := make([]*cluster.Log, len(nodes))
	for i, n := range nodes {
		logs[i] = n.log
	}
	current := func() []*cluster.Log {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(logs)
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for id := range 3 {
		wg.Go(func() { producer(ctx, id, current, h) })
	}
	for id := 3; id < 5; id++ {
		rng := rand.New(rand.NewPCG(uint64(id), 2))
		wg.Go(func() { consumer(ctx, id, current, h, rng) })
	}
	var failovers []time.Duration
	for round := range 5 {
		waitFor(t, func() bool { return h.ackedCount() >= 40*(round+1) })
		leader := waitLeader(t, nodes...)
		killed, killedAt := time.Now(), h.now()
		leader.stop(t)
		// The first write sent after the crash and acknowledged.
		waitFor(t, func() bool { return h.ackedSince(killedAt) })
		failovers = append(failovers, time.Since(killed))
		back := p.startNode(t, leader.id, leader.dir, leader.port.addr, false, defaults)
		*leader = *back
		mu.Lock()
		for i, n := range nodes {
			logs[i] = n.log
		}
		mu.Unlock()
	}
	t.Logf("time from closing the leader to the next acknowledged write: %v", failovers)
	stop()
	wg.Wait()

	end := appendTo(t, nodes, [][]byte{[]byte("end")})
	waitApplied(t, end+1, nodes...)
	vals := sameLogs(t, nodes...)
	h.mu.Lock()
	for off, v := range h.acked {
		if off >= uint64(len(vals)) || string(vals[off]) != v {
			t.Errorf("acknowledged %q at offset %d is missing", v, off)
		}
	}
	h.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(logModel, h.ops, time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(artifactDir(t), "history.html")
		if err := porcupine.VisualizePath(logModel, info, path); err != nil {
			t.Error(err)
		}
		explain(t, h, vals)
		t.Fatalf("history of %d operations: %s; see %s", len(h.ops), res, path)
	}
}

// artifactDir is where a failed check leaves its evidence:
// $PROGLOG_ARTIFACTS (CI keeps it) or the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PROGLOG_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// explain reports what makes a history illegal against the final log:
// records no produce in the history accounts for, and reads that saw
// something else than the final log holds.
func explain(t *testing.T, h *history, vals [][]byte) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	produced := map[string]bool{}
	for _, op := range h.ops {
		switch in := op.Input.(type) {
		case produceIn:
			produced[in.value] = true
		case consumeIn:
			out := op.Output.(consumeOut)
			if in.offset >= uint64(len(vals)) || string(vals[in.offset]) != out.value {
				t.Errorf("client %d read %q at offset %d; the final log holds %q there", op.ClientId, out.value, in.offset, vals[min(in.offset, uint64(len(vals)-1))])
			}
		}
	}
	for off, v := range vals {
		if !produced[string(v)] && string(v) != "end" {
			t.Errorf("offset %d holds %q, which no produce in the history returned (acknowledged or unknown)", off, v)
		}
	}
}
