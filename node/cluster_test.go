package node_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/service"
)

// Three nodes: two join the first through gossip, appends through a
// follower reach the leader, and a graceful stop of the leader hands
// leadership over. By default the stopped node stays a voter (a rolling
// restart keeps the voter set, so the quorum never shrinks), and started
// again it rejoins, catches up and reports ready; with LeaveOnTerminate it
// leaves, and the other two go on as a cluster of two. Either way every
// record is kept and the others take writes.
func TestGracefulLeaderStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave bool
	}{
		{"stays a member", false},
		{"leave on terminate", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, cfgs, clients, root := startThreeWith(t, func(cfg *node.Config) { cfg.Cluster.LeaveOnTerminate = tc.leave })
			// Leadership may move while the others join on a loaded
			// machine: the test goes by whoever leads.
			leader := -1
			waitFor(t, "n2 and n3 to be voters", func() bool {
				got := servers(t, clients[0])
				leader = slices.IndexFunc(got, func(s string) bool { return strings.HasSuffix(s, "*") })
				return len(got) == 3 && leader >= 0
			})
			follower, other := (leader+1)%3, (leader+2)%3
			if got := produce(t, clients[follower], "a", "b"); !slices.Equal(got, []uint64{0, 1}) {
				t.Fatalf("offsets through a follower: %v", got)
			}

			if err := nodes[leader].stop(t); err != nil {
				t.Fatalf("stopping the leader: %v", err)
			}
			gone := fmt.Sprint("n", leader+1, "@")
			want := 3 // the stopped node stays a voter
			if tc.leave {
				want = 2 // the new leader removes it once it has left
			}
			waitFor(t, "the others to go on with a new leader", func() bool {
				got := servers(t, clients[follower])
				listed := slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, gone) })
				newLeader := slices.ContainsFunc(got, func(s string) bool { return strings.HasSuffix(s, "*") && !strings.HasPrefix(s, gone) })
				return len(got) == want && listed == !tc.leave && newLeader
			})
			if got := produce(t, clients[other], "c"); !slices.Equal(got, []uint64{2}) {
				t.Fatalf("offset after the handover: %v", got)
			}
			for _, i := range []int{follower, other} {
				if got := consume(t, clients[i], 0, 3); !slices.Equal(got, []string{"a", "b", "c"}) {
					t.Fatalf("n%d holds %q", i+1, got)
				}
			}
			if tc.leave {
				return
			}

			// Started again with the same flags, it rejoins as the voter it
			// was, catches up and reports ready.
			restarted := start(t, cfgs[leader])
			c, hc, url := client(t, restarted.Addr(), root)
			waitFor(t, "the restarted node to be ready", func() bool {
				return health(t, hc, url, service.ReadyHealthService) == grpchealth.StatusServing
			})
			if got := consume(t, c, 0, 3); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("the restarted node holds %q", got)
			}
			if got := servers(t, c); len(got) != 3 {
				t.Fatalf("servers after the restart: %v", got)
			}
		})
	}
}

// TestRemoveNode: RemoveNode refuses a live node and an unknown one; once a node is down it removes it
// from Raft and gossip through any node (a follower forwards to the
// leader), lists the partitions still placed on it, and the two left take
// writes on every partition.
func TestRemoveNode(t *testing.T) {
	nodes, _, clients, _ := startThree(t)
	ctx := t.Context()
	if _, err := clients[0].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		code connect.Code
	}{
		{"n3", connect.CodeFailedPrecondition}, // alive
		{"n9", connect.CodeNotFound},
		{"", connect.CodeInvalidArgument},
	} {
		_, err := clients[1].RemoveNode(ctx, &logv1.RemoveNodeRequest{NodeId: tc.id})
		if connect.CodeOf(err) != tc.code {
			t.Errorf("RemoveNode(%q) = %v, want %v", tc.id, err, tc.code)
		}
	}

	if err := nodes[2].stop(t); err != nil {
		t.Fatal(err)
	}
	var resp *logv1.RemoveNodeResponse
	waitFor(t, "n3 to be removed once gossip finds it failed", func() bool {
		var err error
		for _, c := range clients[:2] {
			if resp, err = c.RemoveNode(ctx, &logv1.RemoveNodeRequest{NodeId: "n3"}); err == nil {
				return true
			}
			// Alive still, or (if n3 led) no leader known yet: ask again.
			if code := connect.CodeOf(err); code != connect.CodeFailedPrecondition && code != connect.CodeUnavailable {
				t.Fatalf("RemoveNode(n3) = %v", err)
			}
		}
		return false
	})
	var stranded []string
	for _, p := range resp.GetStranded() {
		stranded = append(stranded, fmt.Sprintf("%s/%d", p.GetTopic(), p.GetPartition()))
	}
	if !slices.Equal(stranded, []string{"orders/0", "orders/1"}) {
		t.Errorf("stranded %v, want both partitions of orders", stranded)
	}
	if len(resp.GetServers()) != 2 {
		t.Errorf("servers after the removal: %v", resp.GetServers())
	}
	for _, c := range clients[:2] {
		if got := servers(t, c); len(got) != 2 || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "n3@") }) {
			t.Fatalf("servers %v still list n3", got)
		}
	}
	// Again: already out, so it succeeds.
	if _, err := clients[0].RemoveNode(ctx, &logv1.RemoveNodeRequest{NodeId: "n3"}); err != nil {
		t.Fatalf("RemoveNode(n3) again: %v", err)
	}
	for p := range 2 {
		if _, err := clients[0].Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: ptr(uint32(p)), Record: &logv1.Record{Value: []byte("x")}}); err != nil {
			t.Fatalf("produce to orders/%d without n3: %v", p, err)
		}
	}
	if got := produce(t, clients[1], "after"); len(got) != 1 {
		t.Fatal(got)
	}
}

// TestCreatePlacesOnLiveNodes: with one node of three down (still a
// member), a topic of replication factor 3 is refused, saying which node
// is down, and one of factor 2 is placed on the two live nodes only.
func TestCreatePlacesOnLiveNodes(t *testing.T) {
	nodes, _, clients, _ := startThree(t)
	ctx := t.Context()
	if err := nodes[2].stop(t); err != nil {
		t.Fatal(err)
	}
	// Until gossip finds n3 failed (a few seconds), n3 counts as alive.
	attempt := 0
	waitFor(t, "a replication factor of 3 to be refused once gossip finds n3 down", func() bool {
		attempt++
		_, err := clients[0].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: fmt.Sprint("three-", attempt), Partitions: 1, ReplicationFactor: 3})
		if err != nil && connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("create: %v", err)
		}
		return err != nil && strings.Contains(err.Error(), "down: n3")
	})
	resp, err := clients[1].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "two", Partitions: 4, ReplicationFactor: 2})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := clients[0].DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: resp.GetTopic().GetName()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range desc.GetPartitions() {
		for _, r := range p.GetReplicas() {
			if r.GetNodeId() == "n3" {
				t.Fatalf("partition %d placed on n3, which is down: %v", p.GetPartition(), p.GetReplicas())
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
