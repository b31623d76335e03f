package client

import (
	"slices"
	"testing"
	"time"
)

func TestRouteOf(t *testing.T) {
	replicas := []Replica{{NodeID: "a", RPCAddr: "10.0.0.1:1"}, {NodeID: "b", RPCAddr: "10.0.0.2:1"}, {NodeID: "c"}}
	for _, tc := range []struct {
		name   string
		p      PartitionState
		leader string
	}{
		{"unknown", PartitionState{Replicas: replicas}, ""},
		{"named", PartitionState{Leader: "b", Replicas: replicas}, "10.0.0.2:1"},
		{"marked", PartitionState{Replicas: []Replica{replicas[0], {NodeID: "b", RPCAddr: "10.0.0.2:1", IsLeader: true}}}, "10.0.0.2:1"},
		{"leader without an address", PartitionState{Leader: "c", Replicas: replicas}, ""},
		{"unspecified host", PartitionState{Leader: "a", Replicas: []Replica{{NodeID: "a", RPCAddr: "0.0.0.0:7"}}}, "192.0.2.1:7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := routeOf(tc.p, "192.0.2.1:9")
			if r.leader != tc.leader {
				t.Fatalf("leader %q, want %q", r.leader, tc.leader)
			}
			if tc.name == "unknown" && !slices.Equal(r.replicas, []string{"10.0.0.1:1", "10.0.0.2:1"}) {
				t.Fatalf("replicas %v", r.replicas)
			}
		})
	}
}

// A failure marks the cache entry it used stale, not a newer one.
func TestInvalidateOnlyTheAnswerUsed(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &Client{cfg: Config{RefreshInterval: time.Minute, Backoff: Backoff{Max: time.Second}, Now: func() time.Time { return now }}}
	old := c.learn("t", topicEntry{partitions: 2, routes: make([]partitionRoute, 2)})
	cur := c.learn("t", topicEntry{partitions: 2, routes: []partitionRoute{{leader: "x"}, {leader: "y"}}})
	c.invalidate("t", old.gen)
	if e := c.topics.entries["t"]; !c.fresh(e) {
		t.Fatal("an invalidation of an older answer made the current one stale")
	}
	c.invalidate("t", cur.gen)
	if e := c.topics.entries["t"]; c.fresh(e) {
		t.Fatal("the invalidated answer is still fresh")
	}
	// An answer missing a leader is trusted for Backoff.Max only.
	inc := c.learn("t", topicEntry{partitions: 1, routes: make([]partitionRoute, 1), incomplete: true})
	now = now.Add(2 * time.Second)
	if c.fresh(inc) {
		t.Fatal("an incomplete answer outlived Backoff.Max")
	}
}
