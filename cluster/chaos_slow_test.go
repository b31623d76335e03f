//go:build slow

package cluster_test

import (
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
	var mu sync.Mutex // guards logs
	logs := logsOf(nodes)
	current := func() []*cluster.Log {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(logs)
	}
	h, stop := runLoad(t, current, 2)
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
		logs = logsOf(nodes)
		mu.Unlock()
	}
	t.Logf("time from closing the leader to the next acknowledged write: %v", failovers)
	stop()

	checkRun(t, h, nodes)
}
