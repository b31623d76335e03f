//go:build slow

package cluster_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

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

	checkRun(t, h, nodes)
}
