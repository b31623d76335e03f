package cluster_test

import (
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
)

// TestAloneUsesSoloTimeouts: a node promised to stay alone runs Raft with
// short timeouts only while the configuration holds it alone, on its first
// start and after a restart; a member of a bigger cluster keeps the
// configured ones even if started alone.
func TestAloneUsesSoloTimeouts(t *testing.T) {
	alone := func(c *cluster.Config) { c.Alone = true }
	const configured = 500 * time.Millisecond // startNode's
	p := newTestPKI(t)

	dir := t.TempDir()
	n := p.startNode(t, "solo", dir, "", true, alone)
	if got := cluster.HeartbeatTimeout(n.log); got >= configured {
		t.Errorf("fresh one-member cluster: heartbeat timeout %v, want the short solo one", got)
	}
	waitLeader(t, n)
	if _, err := n.log.Append(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	addr := n.port.addr
	n.stop(t)
	n = p.startNode(t, "solo", dir, addr, true, alone)
	if got := cluster.HeartbeatTimeout(n.log); got >= configured {
		t.Errorf("restarted one-member cluster: heartbeat timeout %v, want the short solo one", got)
	}
	n.stop(t)

	nodes := p.startCluster(t, 2)
	n2 := nodes[1]
	addr, dir = n2.port.addr, n2.dir
	n2.stop(t)
	n2 = p.startNode(t, n2.id, dir, addr, false, alone)
	nodes[1] = n2
	if got := cluster.HeartbeatTimeout(n2.log); got != configured {
		t.Errorf("member of a two-node cluster started alone: heartbeat timeout %v, want %v", got, configured)
	}
}
