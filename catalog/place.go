package catalog

import (
	"cmp"
	"fmt"
	"slices"
)

// DefaultReplicationFactor is the replication factor of a topic created
// without one: three copies, or one per node if there are fewer.
func DefaultReplicationFactor(nodes int) int { return max(0, min(3, nodes)) }

// Place chooses the replicas of a new topic's partitions among nodes,
// the preferred leader first. load counts the replicas each node holds
// already (View.Load); nodes it lacks hold none.
//
// Each partition gets rf distinct nodes. Preferred leaders take turns
// over the nodes in order of load, then ID (partition p is led by the
// p%n-th), so every node leads within one as many of the topic's
// partitions as any other, and the least loaded lead the odd ones. The
// other replicas go to the nodes with the fewest replicas counting load;
// of equals, to the node whose turn to lead is furthest off, so a node is
// not handed a follower just before it must lead. From equal loads,
// replica counts end within one of each other, for any partition count;
// from unequal ones the spread never widens (beyond one) and the least
// loaded catch up as far as leaders' turns allow: with rf 1 the leaders
// are all there is. The same arguments, in any order, give the same
// placement.
func Place(nodes []string, load map[string]int, partitions, rf int) ([][]string, error) {
	switch {
	case rf < 1:
		return nil, fmt.Errorf("%w: replication factor %d", ErrInvalid, rf)
	case partitions < 1 || partitions > MaxPartitions:
		return nil, fmt.Errorf("%w: %d partitions, want 1 to %d", ErrInvalid, partitions, MaxPartitions)
	}
	// Leaders take turns in order of load, then ID: partition p is led
	// by order[p%n], so leaders stay within one for any partition count.
	order := slices.Compact(slices.Sorted(slices.Values(nodes)))
	if len(order) > 0 && order[0] == "" {
		return nil, fmt.Errorf("%w: empty node ID", ErrInvalid)
	}
	n := len(order)
	if rf > n {
		return nil, fmt.Errorf("%w: replication factor %d, %d nodes", ErrNotEnoughNodes, rf, n)
	}
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(load[a], load[b]) })
	count := make([]int, n) // replicas, counting load, by position in order
	for i, id := range order {
		count[i] = load[id]
	}
	out := make([][]string, partitions)
	chosen := make([]bool, n)
	for p := range out {
		clear(chosen)
		lead := p % n
		count[lead]++
		chosen[lead] = true
		rs := make([]string, 1, rf)
		rs[0] = order[lead]
		// Followers: fewest replicas; of equals, the node whose turn to
		// lead is furthest off, so that leading will not push a node that
		// was just given a follower above the rest.
		for len(rs) < rf {
			f := -1
			for k := 1; k < n; k++ {
				j := (lead + n - k) % n // the leader's predecessors, nearest first
				if !chosen[j] && (f < 0 || count[j] < count[f]) {
					f = j
				}
			}
			count[f]++
			chosen[f] = true
			rs = append(rs, order[f])
		}
		out[p] = rs
	}
	return out, nil
}
