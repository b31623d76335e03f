package catalog

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	return ids
}

// spread is max-min of counts over nodes.
func spread(nodes []string, counts map[string]int) int {
	lo, hi := counts[nodes[0]], counts[nodes[0]]
	for _, id := range nodes {
		lo, hi = min(lo, counts[id]), max(hi, counts[id])
	}
	return hi - lo
}

// checkPartition fails unless rs is rf distinct IDs of nodes.
func checkPartition(t *testing.T, nodes, rs []string, rf int) {
	t.Helper()
	if len(rs) != rf || checkReplicas(rs) != nil {
		t.Fatalf("replicas %q, want %d distinct", rs, rf)
	}
	for _, id := range rs {
		if !slices.Contains(nodes, id) {
			t.Fatalf("replicas %q: %q is not a node", rs, id)
		}
	}
}

// From no load, every partition count gives replica and leader counts
// within one. Placement is sequential (partition p depends only on those
// before it), so one call checks every prefix.
func TestPlaceEvenFromZero(t *testing.T) {
	for n := 1; n <= 12; n++ {
		nodes := nodeIDs(n)
		for rf := 1; rf <= min(5, n); rf++ {
			all, err := Place(nodes, nil, MaxPartitions, rf)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []int{1, n - 1, n + 1, 100} {
				if some, _ := Place(nodes, nil, max(p, 1), rf); !reflect.DeepEqual(some, all[:max(p, 1)]) {
					t.Fatalf("n=%d rf=%d: %d partitions are not a prefix of %d", n, rf, p, MaxPartitions)
				}
			}
			replicas, leaders := map[string]int{}, map[string]int{}
			for p, rs := range all {
				checkPartition(t, nodes, rs, rf)
				leaders[rs[0]]++
				for _, id := range rs {
					replicas[id]++
				}
				if spread(nodes, replicas) > 1 || spread(nodes, leaders) > 1 {
					t.Fatalf("n=%d rf=%d, %d partitions: replicas %v, leaders %v", n, rf, p+1, replicas, leaders)
				}
			}
		}
	}
}

// Over random nodes, loads and sizes: replicas distinct, leaders within
// one, the spread of replica counts no wider than before (or one), and
// the same placement for the same arguments in any order.
func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for range 5000 {
		n := rng.IntN(9) + 1
		rf := rng.IntN(min(3, n)) + 1
		partitions := rng.IntN(100) + 1
		nodes := nodeIDs(n)
		load := map[string]int{"gone": 5} // a node no longer there
		top := rng.IntN(60) + 1
		for _, id := range nodes {
			if rng.IntN(4) > 0 { // some nodes hold nothing yet
				load[id] = rng.IntN(top)
			}
		}
		got, err := Place(nodes, load, partitions, rf)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != partitions {
			t.Fatalf("%d partitions placed, want %d", len(got), partitions)
		}
		after, leaders := maps.Clone(load), map[string]int{}
		for _, rs := range got {
			checkPartition(t, nodes, rs, rf)
			leaders[rs[0]]++
			for _, id := range rs {
				after[id]++
			}
		}
		if spread(nodes, leaders) > 1 {
			t.Fatalf("n=%d rf=%d partitions=%d load %v: leaders %v", n, rf, partitions, load, leaders)
		}
		if before := spread(nodes, load); spread(nodes, after) > max(before, 1) {
			t.Fatalf("n=%d rf=%d partitions=%d: load %v became %v", n, rf, partitions, load, after)
		}
		shuffled := append(slices.Clone(nodes), nodes[0])
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again, _ := Place(shuffled, maps.Clone(load), partitions, rf); !reflect.DeepEqual(again, got) {
			t.Fatalf("placement depends on the order of nodes: %q, then %q", got, again)
		}
	}
}

// Equal loads place as no load does.
func TestPlaceEvenLoad(t *testing.T) {
	nodes := nodeIDs(5)
	load := map[string]int{}
	for _, id := range nodes {
		load[id] = 17
	}
	got, _ := Place(nodes, load, 7, 3)
	want, _ := Place(nodes, nil, 7, 3)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("equal load placed %q, no load %q", got, want)
	}
}

func TestPlaceRefuses(t *testing.T) {
	tests := []struct {
		nodes          []string
		partitions, rf int
		want           error
	}{
		{nodeIDs(3), 1, 0, ErrInvalid},
		{nodeIDs(3), 0, 1, ErrInvalid},
		{nodeIDs(3), MaxPartitions + 1, 1, ErrInvalid},
		{[]string{"a", ""}, 1, 1, ErrInvalid},
		{nodeIDs(2), 1, 3, ErrNotEnoughNodes},
		{[]string{"a", "a"}, 1, 2, ErrNotEnoughNodes}, // one node, named twice
		{nil, 1, 1, ErrNotEnoughNodes},
	}
	for _, tt := range tests {
		if got, err := Place(tt.nodes, nil, tt.partitions, tt.rf); !errors.Is(err, tt.want) {
			t.Errorf("Place(%q, nil, %d, %d) = %q, %v; want %v", tt.nodes, tt.partitions, tt.rf, got, err, tt.want)
		}
	}
}

// A placement is always a create Apply accepts.
func TestPlaceThenCreate(t *testing.T) {
	c := New()
	nodes := nodeIDs(4)
	for i := range 5 {
		rf := DefaultReplicationFactor(len(nodes))
		replicas, err := Place(nodes, c.View().Load(), 3+i, rf)
		if err != nil {
			t.Fatal(err)
		}
		res := c.Apply(uint64(i+1), t0, EncodeCreate(CreateTopic{Name: fmt.Sprintf("t%d", i), ReplicationFactor: rf, Replicas: replicas})).(Result)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if load := c.View().Load(); spread(nodes, load) > 1 {
		t.Fatalf("five topics placed by load: %v", load)
	}
}

func TestDefaultReplicationFactor(t *testing.T) {
	for nodes, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 9: 3} {
		if got := DefaultReplicationFactor(nodes); got != want {
			t.Errorf("DefaultReplicationFactor(%d) = %d, want %d", nodes, got, want)
		}
	}
}

// Node a holds a replica already: it leads last, and b, c and d each
// hold one more replica than a.
func ExamplePlace() {
	replicas, _ := Place([]string{"c", "a", "b", "d"}, map[string]int{"a": 1}, 4, 3)
	fmt.Println(replicas)
	// Output: [[b d c] [c b a] [d c b] [a d c]]
}
