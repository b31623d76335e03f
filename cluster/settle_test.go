package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
)

// A group with a SettledTimeout elects its first leader on the short
// timeouts, then heartbeats on the settled one: every member's raft runs
// with it, the leader keeps its lease between the sparser heartbeats (it
// stays leader while writes go on), and a dead leader is still replaced.
func TestSettledTimeout(t *testing.T) {
	const settled = 1200 * time.Millisecond
	nodes := newTestPKI(t).startCluster(t, 3, func(c *cluster.Config) {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout // raft's lease cannot change later: it must suit the settled timeout
		c.SettledTimeout = settled
		c.CommitTimeout = settled / 2 // as on the Mux: idle, heartbeats are most of the contact
	})
	for _, n := range nodes {
		waitFor(t, func() bool { return cluster.HeartbeatTimeout(n.log) == settled })
	}

	leader := waitLeader(t, nodes...)
	for i := range 20 {
		appendTo(t, nodes, [][]byte{fmt.Appendf(nil, "settled-%d", i)})
	}
	// Idle, only heartbeats keep the leader's lease.
	time.Sleep(2 * settled)
	if now := waitLeader(t, nodes...); now != leader {
		t.Fatalf("leadership moved from %s to %s with no fault: the lease does not span the settled heartbeats", leader.id, now.id)
	}

	leader.stop(t)
	var rest []*node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	at := appendTo(t, rest, [][]byte{[]byte("after the leader died")})
	waitApplied(t, at+1, rest...)
	sameLogs(t, rest...)
}

// A lease that a settled group's heartbeats cannot keep is refused.
func TestSettledTimeoutLeaseRefused(t *testing.T) {
	pt := newTestPKI(t).startPort(t, "n1", "", clustertest.Logger(t))
	defer pt.stop(t)
	_, err := cluster.New(cluster.Config{NodeID: "n1", DataDir: t.TempDir(), Stream: pt.layer,
		HeartbeatTimeout: time.Second, LeaderLeaseTimeout: 500 * time.Millisecond, SettledTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "too short for SettledTimeout") {
		t.Fatalf("New: %v, want the lease refused", err)
	}
}
