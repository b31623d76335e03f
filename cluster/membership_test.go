package cluster_test

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/membership"
)

// TestMembershipFormsCluster wires gossip to Raft as a server would: the
// first node bootstraps, the others only join gossip, and the leader turns
// gossip joins and leaves into voters added and removed.
func TestMembershipFormsCluster(t *testing.T) {
	p := newTestPKI(t)
	key := make([]byte, 32)
	rand.Read(key)
	var nodes []*node
	var members []*membership.Membership
	t.Cleanup(func() {
		for _, m := range members {
			m.Close()
		}
		for _, n := range nodes {
			n.stop(t)
		}
	})
	for i := range 3 {
		n := p.startNode(t, fmt.Sprintf("n%d", i+1), t.TempDir(), "", i == 0)
		nodes = append(nodes, n)
		var join []string
		if i > 0 {
			join = []string{members[0].GossipAddr()}
		}
		m, err := membership.New(membership.Config{
			NodeID: n.id, GossipAddr: "127.0.0.1:0", RPCAddr: n.port.addr, Join: join,
			SecretKey: key, Handler: n.log, ReconcileInterval: 200 * time.Millisecond,
			Local: true, Logger: clustertest.Logger(t).With("node", n.id),
		})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	ids := func() []string {
		leader := waitLeader(t, nodes...)
		servers, err := leader.log.Servers()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range servers {
			out = append(out, s.ID)
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, func() bool { return slices.Equal(ids(), []string{"n1", "n2", "n3"}) })
	base := appendTo(t, nodes, batch("gossip", 20))
	waitApplied(t, base+20, nodes...)
	sameLogs(t, nodes...)

	// n3 leaves gracefully: it is removed from Raft.
	if err := members[2].Leave(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return slices.Equal(ids(), []string{"n1", "n2"}) })
}
