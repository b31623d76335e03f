package cluster_test

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
)

// TestRemoveFailedNeedsQuorum: the leader lists its voters (a follower
// says it is not the leader), removes a stopped voter while a quorum
// answers, and removes nothing once the voters left cannot answer.
func TestRemoveFailedNeedsQuorum(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	voters, err := leader.log.Voters()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if voters[n.id] != n.port.addr {
			t.Fatalf("voters %v, want %s at %s", voters, n.id, n.port.addr)
		}
	}
	var followers []*node
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	if _, err := followers[0].log.Voters(); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("Voters on a follower: %v, want ErrNotLeader", err)
	}

	// One of three stopped: the other two answer, it is removed.
	followers[0].stop(t)
	if err := leader.log.RemoveFailed(followers[0].id); err != nil {
		t.Fatal(err)
	}
	voters, err = leader.log.Voters()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(voters)); !slices.Equal(got, []string{leader.id, followers[1].id}) {
		t.Fatalf("voters %v after removing %s", got, followers[0].id)
	}

	// The other stopped too: no quorum answers, nothing is removed. A
	// heartbeat it answered just before it stopped may still be on its
	// way to the leader's replicator, and raft counts such a late answer
	// toward a VerifyLeader started meanwhile (seen once in CI under
	// -race): two heartbeat intervals (HeartbeatTimeout/10 each) let it
	// land first, well inside the leader's lease.
	followers[1].stop(t)
	time.Sleep(2 * testHeartbeatTimeout / 10)
	if err := leader.log.RemoveFailed(followers[1].id); err == nil {
		t.Fatal("removed a voter although no quorum answered")
	}
	servers, err := leader.log.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 {
		t.Fatalf("servers %+v, want the leader and %s", servers, followers[1].id)
	}
}
