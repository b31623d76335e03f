package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/proglog/proglog/catalog"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/node"
)

// startThree starts a three-node cluster through gossip and returns its
// nodes, data dirs, a root client of each and root's TLS config, once all
// are voters. opts change each node's configuration.
func startThree(t *testing.T, opts ...func(*node.Config)) ([]*running, []string, []logv1connect.LogServiceClient, *tls.Config) {
	t.Helper()
	nodes, cfgs, clients, root := startThreeWith(t, func(cfg *node.Config) {
		for _, o := range opts {
			o(cfg)
		}
	})
	dirs := make([]string, len(cfgs))
	for i, cfg := range cfgs {
		dirs[i] = cfg.DataDir
	}
	return nodes, dirs, clients, root
}

// startThreeWith is startThree with tweak applied to each node's
// configuration (nil: none). It returns the configurations as the nodes
// run them, with their listening address, so a test can restart one.
func startThreeWith(t *testing.T, tweak func(*node.Config)) ([]*running, []node.Config, []logv1connect.LogServiceClient, *tls.Config) {
	t.Helper()
	id := newIdentity(t)
	var (
		nodes   []*running
		cfgs    []node.Config
		clients []logv1connect.LogServiceClient
		seed    string
	)
	for i := range 3 {
		cfg := gossip(t, id.config(t, t.TempDir()))
		cfg.NodeID = fmt.Sprint("n", i+1)
		if i == 0 {
			cfg.Cluster.Bootstrap = true
			seed = cfg.Cluster.GossipAddr
		} else {
			cfg.Cluster.Join = []string{seed}
		}
		if tweak != nil {
			tweak(&cfg)
		}
		n := start(t, cfg)
		waitFor(t, cfg.NodeID+" to gossip", func() bool {
			conn, err := net.Dial("tcp", cfg.Cluster.GossipAddr)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
		cfg.Addr = n.Addr()
		c, _, _ := client(t, n.Addr(), id.root)
		nodes, cfgs, clients = append(nodes, n), append(cfgs, cfg), append(clients, c)
	}
	waitFor(t, "three voters", func() bool { return len(servers(t, clients[0])) == 3 })
	return nodes, cfgs, clients, id.root
}

// partitionDirs lists the partition directories under a node's data dir.
func partitionDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "partitions"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "wal" { // the partitions' shared Raft log
			out = append(out, e.Name())
		}
	}
	return out
}

// TestTopicsAcrossThreeNodes creates a topic of four partitions at
// replication factor 2 on three nodes, produces keyed records through
// every node (each hosts some partitions and forwards the others),
// reads every partition back through every node, and deletes the topic:
// every node stops its partitions and removes their files.
func TestTopicsAcrossThreeNodes(t *testing.T) {
	_, dirs, clients, _ := startThree(t)
	ctx := t.Context()

	created, err := clients[1].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 4, ReplicationFactor: 2})
	if err != nil {
		t.Fatalf("CreateTopic through a node: %v", err)
	}
	if got := created.GetTopic(); got.GetPartitions() != 4 || got.GetReplicationFactor() != 2 {
		t.Fatalf("created %v", got)
	}
	if _, err := clients[2].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders"}); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("second CreateTopic: %v, want AlreadyExists", err)
	}

	// Each key goes to its murmur2 partition, whichever node takes it.
	want := map[uint32][]string{}
	for i := range 40 {
		key := fmt.Sprint("customer-", i)
		p := uint32(catalog.PartitionForKey([]byte(key), 4))
		res, err := clients[i%3].Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: &logv1.Record{Key: []byte(key), Value: []byte(key)}})
		if err != nil {
			t.Fatalf("Produce %s through n%d: %v", key, i%3+1, err)
		}
		if res.GetPartition() != p || res.GetOffset() != uint64(len(want[p])) {
			t.Fatalf("Produce %s: partition %d offset %d, want partition %d offset %d", key, res.GetPartition(), res.GetOffset(), p, len(want[p]))
		}
		want[p] = append(want[p], key)
	}
	for _, c := range clients {
		for p := range uint32(4) {
			if got := consumeTopic(t, c, "orders", p, len(want[p])); !slices.Equal(got, want[p]) {
				t.Fatalf("partition %d reads %q, want %q", p, got, want[p])
			}
		}
	}
	// The default topic is untouched.
	if got := produce(t, clients[0], "plain"); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("default topic offsets %v", got)
	}

	desc, err := clients[0].DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	hosted := 0
	for _, p := range desc.GetPartitions() {
		if len(p.GetReplicas()) != 2 || p.GetReplicas()[0].GetNodeId() == p.GetReplicas()[1].GetNodeId() {
			t.Fatalf("partition %d replicas %v", p.GetPartition(), p.GetReplicas())
		}
		hosted += len(p.GetReplicas())
	}
	if hosted != 8 {
		t.Fatalf("%d replicas, want 8", hosted)
	}
	total := 0
	for _, d := range dirs {
		total += len(partitionDirs(t, d))
	}
	if total != 8 {
		t.Fatalf("%d partition directories over the nodes, want 8", total)
	}

	if _, err := clients[2].DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "orders"}); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	waitFor(t, "every node to remove the topic's partitions", func() bool {
		for _, d := range dirs {
			if len(partitionDirs(t, d)) != 0 {
				return false
			}
		}
		return true
	})
	if _, err := clients[0].Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: &logv1.Record{Value: []byte("x")}}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Produce to a deleted topic: %v, want NotFound", err)
	}
	if _, err := clients[0].DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: catalog.DefaultTopic}); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("DeleteTopic default: %v, want FailedPrecondition", err)
	}
}

// waitPreferredLeaders waits until every partition of topic is led by its
// preferred replica (the first), and returns the leaders per node.
func waitPreferredLeaders(t *testing.T, c logv1connect.LogServiceClient, topic string) map[string]int {
	t.Helper()
	var perNode map[string]int
	waitFor(t, "every partition of "+topic+" led by its preferred leader", func() bool {
		desc, err := c.DescribeTopic(t.Context(), &logv1.DescribeTopicRequest{Name: topic})
		if err != nil {
			t.Fatal(err)
		}
		perNode = map[string]int{}
		for _, p := range desc.GetPartitions() {
			if p.GetLeader() == "" || p.GetLeader() != p.GetReplicas()[0].GetNodeId() {
				return false
			}
			perNode[p.GetLeader()]++
		}
		return true
	})
	return perNode
}

// TestStreamThroughEveryReplica: a ProduceStream spread over the
// partitions of a topic whose every partition has a replica on every node
// (replication factor 3), sent to each node in turn without waiting for
// acknowledgements. A node sends the requests for the partitions it
// follows to their leaders (several forwards on their way at once) and
// appends the ones it leads: the acknowledgements still come in order, and
// every partition holds the stream's records for it in the order sent.
func TestStreamThroughEveryReplica(t *testing.T) {
	_, _, clients, _ := startThree(t)
	ctx := t.Context()
	const partitions = 6
	if _, err := clients[0].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "spread", Partitions: partitions, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	// Leaderships move to the preferred replicas a few seconds after the
	// first elections; a write caught by a move has an unknown outcome,
	// which this test is not about.
	waitPreferredLeaders(t, clients[0], "spread")
	want := map[uint32][]string{}
	for n, c := range clients {
		stream, err := c.ProduceStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		type sentReq struct {
			part   uint32
			values []string
		}
		var sent []sentReq
		for i := range 90 {
			part := uint32((i*5 + n) % partitions)
			req := &logv1.ProduceStreamRequest{Topic: "spread", Partition: &part}
			var values []string
			for j := range 1 + i%4 {
				v := fmt.Sprintf("n%d-r%d-%d", n+1, i, j)
				req.Records = append(req.Records, &logv1.Record{Value: []byte(v)})
				values = append(values, v)
			}
			if err := stream.Send(req); err != nil {
				t.Fatalf("n%d send %d: %v", n+1, i, err)
			}
			sent = append(sent, sentReq{part, values})
		}
		if err := stream.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		for i, r := range sent {
			ack, err := stream.Receive()
			if err != nil {
				t.Fatalf("n%d ack %d: %v", n+1, i, err)
			}
			if ack.GetPartition() != r.part || ack.GetOffset() != uint64(len(want[r.part])) || int(ack.GetCount()) != len(r.values) {
				t.Fatalf("n%d ack %d: %v; want partition %d offset %d count %d", n+1, i, ack, r.part, len(want[r.part]), len(r.values))
			}
			want[r.part] = append(want[r.part], r.values...)
		}
		if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
			t.Fatalf("n%d stream end: %v", n+1, err)
		}
		_ = stream.CloseResponse()
	}
	for p := range uint32(partitions) {
		if got := consumeTopic(t, clients[p%3], "spread", p, len(want[p])); !slices.Equal(got, want[p]) {
			t.Fatalf("partition %d reads %d records %q..., want %d", p, len(got), got[:min(3, len(got))], len(want[p]))
		}
	}
}

// consumeTopic reads n records of a partition from offset 0 with
// ConsumeStream and checks Consume agrees.
func consumeTopic(t *testing.T, c logv1connect.LogServiceClient, topic string, partition uint32, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got []string
	if n > 0 {
		stream, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: topic, Partition: partition, MaxBatch: 100})
		if err != nil {
			t.Fatal(err)
		}
		for len(got) < n && stream.Receive() {
			for _, r := range stream.Msg().GetRecords() {
				got = append(got, string(r.GetValue()))
			}
			if r := stream.Msg().GetRecord(); r != nil {
				got = append(got, string(r.GetValue()))
			}
		}
		if len(got) < n {
			t.Fatalf("%s/%d: %d records, want %d: %v", topic, partition, len(got), n, stream.Err())
		}
		cancel()
		stream.Close()
	}
	for i, v := range got {
		res, err := c.Consume(t.Context(), &logv1.ConsumeRequest{Topic: topic, Partition: partition, Offset: uint64(i)})
		if err != nil || string(res.GetRecord().GetValue()) != v {
			t.Fatalf("Consume %s/%d@%d = %v, %v; the stream read %q", topic, partition, i, res, err, v)
		}
	}
	return got
}

// TestLeadersBalance creates six partitions replicated on all three
// nodes: whoever wins their elections, each node ends up leading the two
// it is the preferred leader of, and GetServers counts them.
func TestLeadersBalance(t *testing.T) {
	nodes, _, clients, root := startThree(t)
	_, hc, url := client(t, nodes[2].Addr(), root)
	if _, err := clients[0].CreateTopic(t.Context(), &logv1.CreateTopicRequest{Name: "events", Partitions: 6, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	perNode := waitPreferredLeaders(t, clients[1], "events")
	if len(perNode) != 3 || perNode["n1"] != 2 || perNode["n2"] != 2 || perNode["n3"] != 2 {
		t.Fatalf("leaders per node %v, want 2 each", perNode)
	}
	res, err := clients[2].GetServers(t.Context(), &logv1.GetServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The node's metrics say the same per partition (once n3 itself has
	// seen the last transfer its peers reported).
	waitFor(t, "n3's metrics to show 6 partitions hosted, 2 led", func() bool {
		resp, err := hc.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var hosted, leads int
		for line := range strings.Lines(string(body)) {
			if strings.HasPrefix(line, "proglog_partition_is_leader{") {
				hosted++
				if strings.HasSuffix(strings.TrimSpace(line), " 1") {
					leads++
				}
			}
		}
		return hosted == 6 && leads == 2
	})
	for _, s := range res.GetServers() {
		want := uint32(2)
		if s.GetIsLeader() {
			want++ // the system group: the default topic's partition
		}
		if s.GetPartitionLeaders() != want {
			t.Fatalf("%s leads %d partitions, want %d (%v)", s.GetId(), s.GetPartitionLeaders(), want, res.GetServers())
		}
	}
}

// TestMovePartition moves a replica of a partition from one node to the
// node that held none, under the records it already has: the new replica
// holds every record, the old one's files are gone, the partition keeps
// taking writes, and a second move cannot start while one is under way.
func TestMovePartition(t *testing.T) {
	_, dirs, clients, _ := startThree(t)
	ctx := t.Context()
	if _, err := clients[0].CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "moving", Partitions: 1, ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	desc, err := clients[0].DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "moving"})
	if err != nil {
		t.Fatal(err)
	}
	var replicas []string
	for _, r := range desc.GetPartitions()[0].GetReplicas() {
		replicas = append(replicas, r.GetNodeId())
	}
	var to string
	for _, id := range []string{"n1", "n2", "n3"} {
		if !slices.Contains(replicas, id) {
			to = id
		}
	}
	from := replicas[0] // the preferred leader: the move removes the leader
	nodeIndex := func(id string) int { return int(id[1] - '1') }
	var want []string
	for i := range 50 {
		v := fmt.Sprint("before-", i)
		if _, err := clients[i%3].Produce(ctx, &logv1.ProduceRequest{Topic: "moving", Record: &logv1.Record{Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, v)
	}
	if _, err := clients[1].MovePartition(ctx, &logv1.MovePartitionRequest{Topic: "moving", FromNode: from, ToNode: from}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a move to the same node: %v, want InvalidArgument", err)
	}
	moved, err := clients[1].MovePartition(ctx, &logv1.MovePartitionRequest{Topic: "moving", FromNode: from, ToNode: to})
	if err != nil {
		t.Fatalf("MovePartition %s -> %s: %v", from, to, err)
	}
	if got := moved.GetReplicas(); len(got) != 2 || !slices.Contains(got, to) || slices.Contains(got, from) {
		t.Fatalf("replicas after the move: %v (moved %s -> %s from %v)", got, from, to, replicas)
	}
	waitFor(t, from+" to remove its replica's files", func() bool { return len(partitionDirs(t, dirs[nodeIndex(from)])) == 0 })
	for i := range 20 {
		v := fmt.Sprint("after-", i)
		res, err := clients[i%3].Produce(ctx, &logv1.ProduceRequest{Topic: "moving", Record: &logv1.Record{Value: []byte(v)}})
		if err != nil {
			t.Fatalf("Produce after the move: %v", err)
		}
		if res.GetOffset() != uint64(len(want)) {
			t.Fatalf("offset %d after the move, want %d", res.GetOffset(), len(want))
		}
		want = append(want, v)
	}
	waitFor(t, to+"'s replica to hold every record", func() bool {
		st, err := clients[nodeIndex(to)].GetStats(ctx, &logv1.GetStatsRequest{Topic: "moving"})
		return err == nil && st.GetNextOffset() == uint64(len(want))
	})
	for _, c := range clients {
		if got := consumeTopic(t, c, "moving", 0, len(want)); !slices.Equal(got, want) {
			t.Fatalf("after the move a node reads %d records, want %d", len(got), len(want))
		}
	}
	waitFor(t, "the group to be the new replicas, all in sync", func() bool {
		desc, err := clients[nodeIndex(to)].DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "moving"})
		if err != nil {
			return false
		}
		p := desc.GetPartitions()[0]
		var ids []string
		for _, r := range p.GetReplicas() {
			if !r.GetInSync() {
				return false
			}
			ids = append(ids, r.GetNodeId())
		}
		return len(ids) == 2 && slices.Contains(ids, to) && !slices.Contains(ids, from)
	})
}

// TestUpdateDefaultTopicRefused: the default topic's settings are the
// node's flags, not the catalogue's.
func TestUpdateDefaultTopicRefused(t *testing.T) {
	id := newIdentity(t)
	n := start(t, id.config(t, t.TempDir()))
	c, _, _ := client(t, n.Addr(), id.root)
	_, err := c.UpdateTopic(t.Context(), &logv1.UpdateTopicRequest{Name: catalog.DefaultTopic, RetentionBytes: proto.Uint64(1)})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("UpdateTopic default: %v, want FailedPrecondition", err)
	}
}
