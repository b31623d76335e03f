package node_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Three nodes: two join the first through gossip, appends through a
// follower reach the leader, and a graceful stop of the leader hands
// leadership over and leaves, so the other two go on as a cluster of two,
// with every record, and take writes.
func TestGracefulLeaderStop(t *testing.T) {
	nodes, _, clients, _ := startThree(t)
	// Leadership may move while the others join on a loaded machine: the
	// test goes by whoever leads.
	leader := -1
	waitFor(t, "n2 and n3 to be voters", func() bool {
		got := servers(t, clients[0])
		leader = slices.IndexFunc(got, func(s string) bool { return strings.HasSuffix(s, "*") })
		return len(got) == 3 && leader >= 0
	})
	follower, other := (leader+1)%3, (leader+2)%3
	// Appends through a follower are forwarded to the leader.
	if got := produce(t, clients[follower], "a", "b"); !slices.Equal(got, []uint64{0, 1}) {
		t.Fatalf("offsets through a follower: %v", got)
	}

	if err := nodes[leader].stop(t); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	// The new leader removes the old one once it has left.
	gone := fmt.Sprint("n", leader+1, "@")
	waitFor(t, "the others to go on without the leader", func() bool {
		got := servers(t, clients[follower])
		return len(got) == 2 && !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, gone) }) &&
			strings.Count(strings.Join(got, " "), "*") == 1
	})
	if got := produce(t, clients[other], "c"); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("offset after the handover: %v", got)
	}
	for _, i := range []int{follower, other} {
		if got := consume(t, clients[i], 0, 3); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("n%d holds %q", i+1, got)
		}
	}
}
