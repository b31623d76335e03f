package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// TopicConfig holds a topic's settings. Zero values take the node's
// defaults: no retention by that measure, the node's maximum record size.
type TopicConfig struct {
	// RetentionBytes deletes a partition's oldest segments while it holds
	// more than this many bytes.
	RetentionBytes uint64
	// RetentionAge deletes segments whose newest record is older than this.
	RetentionAge time.Duration
	// MaxRecordBytes caps one record (key, headers and value together); it
	// cannot exceed the node's --max-record-bytes.
	MaxRecordBytes uint32
}

// TopicSpec is what CreateTopic creates. Zero fields take the server's
// defaults: 1 partition, a replication factor of min(3, nodes).
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Config            TopicConfig
}

// TopicInfo is a named log split into partitions.
type TopicInfo struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Config            TopicConfig
	Created           time.Time // zero when the server did not say
}

// TopicUpdate changes the settings whose fields are not nil; the others
// keep their values. Zero turns retention by that measure off, or for
// MaxRecordBytes takes the node's default.
type TopicUpdate struct {
	RetentionBytes *uint64
	RetentionAge   *time.Duration
	MaxRecordBytes *uint32
}

// TopicDescription is a topic and, per partition, where it lives and what
// it holds.
type TopicDescription struct {
	Topic      TopicInfo
	Partitions []PartitionState
}

// PartitionState describes one partition as the answering node knows it.
type PartitionState struct {
	Partition int
	// Leader is the node ID of the partition's leader; "" while it has none.
	Leader   string
	Replicas []Replica
	// LowestOffset, NextOffset and SizeBytes as Stats reports them, from
	// the leader where it answered, else from the answering node's replica.
	LowestOffset, NextOffset, SizeBytes uint64
}

// Replica is one node holding a copy of a partition.
type Replica struct {
	NodeID, RPCAddr string
	IsLeader        bool
	// InSync: the replica is a voter of the partition's Raft group (it
	// counts toward the quorum that commits) and the group has a leader.
	// A learner still catching up after a move is not in sync.
	InSync bool
}

// CreateTopic creates a topic and returns it as created (with the
// server's defaults filled in). It fails with AlreadyExists when the name
// is taken. Like an append, it goes to the leader and is retried only
// while it certainly did not happen.
func (c *Client) CreateTopic(ctx context.Context, spec TopicSpec) (*TopicInfo, error) {
	req := &logv1.CreateTopicRequest{
		Name:              spec.Name,
		Partitions:        uint32(max(spec.Partitions, 0)),
		ReplicationFactor: uint32(max(spec.ReplicationFactor, 0)),
		Config: &logv1.TopicConfig{
			RetentionBytes: spec.Config.RetentionBytes,
			RetentionAge:   duration(spec.Config.RetentionAge),
			MaxRecordBytes: spec.Config.MaxRecordBytes,
		},
	}
	resp, err := appendCall(ctx, c, "CreateTopic", func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.CreateTopicResponse, error) {
		return cl.CreateTopic(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	c.forgetTopic(spec.Name)
	return topicOf(resp.GetTopic()), nil
}

// ListTopics lists the topics the caller may consume or produce to, as the
// leader knows them (another server while the leader does not answer).
func (c *Client) ListTopics(ctx context.Context) ([]*TopicInfo, error) {
	resp, err := read(ctx, c, "ListTopics", c.leaderTarget, func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.ListTopicsResponse, error) {
		return cl.ListTopics(ctx, &logv1.ListTopicsRequest{})
	})
	if err != nil {
		return nil, err
	}
	topics := make([]*TopicInfo, len(resp.GetTopics()))
	for i, t := range resp.GetTopics() {
		topics[i] = topicOf(t)
	}
	return topics, nil
}

// DescribeTopic gives a topic's settings and, per partition, its replicas,
// leader and offsets, as the leader knows them (another server while the
// leader does not answer): a node knows the leader and offsets of the
// partitions it hosts only. "" is the topic "default". It fails with
// NotFound for a topic that does not exist.
func (c *Client) DescribeTopic(ctx context.Context, name string) (*TopicDescription, error) {
	d, _, err := c.describe(ctx, name)
	return d, err
}

// describe is DescribeTopic; asked is the server that answered.
func (c *Client) describe(ctx context.Context, name string) (_ *TopicDescription, asked string, _ error) {
	name = topicName(name)
	resp, err := read(ctx, c, "DescribeTopic", func(avoid string) (string, uint64) {
		addr, gen := c.leaderTarget(avoid)
		asked = addr
		return addr, gen
	}, func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.DescribeTopicResponse, error) {
		return cl.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: name})
	})
	if err != nil {
		return nil, asked, err
	}
	return descriptionOf(resp), asked, nil
}

func descriptionOf(resp *logv1.DescribeTopicResponse) *TopicDescription {
	d := &TopicDescription{Topic: *topicOf(resp.GetTopic())}
	for _, p := range resp.GetPartitions() {
		ps := PartitionState{
			Partition:    int(p.GetPartition()),
			Leader:       p.GetLeader(),
			LowestOffset: p.GetLowestOffset(),
			NextOffset:   p.GetNextOffset(),
			SizeBytes:    p.GetSizeBytes(),
		}
		for _, r := range p.GetReplicas() {
			ps.Replicas = append(ps.Replicas, Replica{NodeID: r.GetNodeId(), RPCAddr: r.GetRpcAddr(), IsLeader: r.GetIsLeader(), InSync: r.GetInSync()})
		}
		d.Partitions = append(d.Partitions, ps)
	}
	return d
}

// UpdateTopic changes the settings update sets and returns the topic as
// updated. Like an append, it goes to the leader and is retried only while
// it certainly did not happen.
func (c *Client) UpdateTopic(ctx context.Context, name string, update TopicUpdate) (*TopicInfo, error) {
	req := &logv1.UpdateTopicRequest{Name: name, RetentionBytes: update.RetentionBytes, MaxRecordBytes: update.MaxRecordBytes}
	if update.RetentionAge != nil {
		req.RetentionAge = durationpb.New(*update.RetentionAge)
	}
	resp, err := appendCall(ctx, c, "UpdateTopic", func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.UpdateTopicResponse, error) {
		return cl.UpdateTopic(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return topicOf(resp.GetTopic()), nil
}

// DeleteTopic deletes a topic and every record in it, on every node. The
// topic "default" cannot be deleted. Like an append, it goes to the leader
// and is retried only while it certainly did not happen.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	_, err := appendCall(ctx, c, "DeleteTopic", func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.DeleteTopicResponse, error) {
		return cl.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: name})
	})
	c.forgetTopic(name)
	return err
}

func topicOf(t *logv1.Topic) *TopicInfo {
	out := &TopicInfo{
		Name:              t.GetName(),
		Partitions:        int(t.GetPartitions()),
		ReplicationFactor: int(t.GetReplicationFactor()),
		Config: TopicConfig{
			RetentionBytes: t.GetConfig().GetRetentionBytes(),
			MaxRecordBytes: t.GetConfig().GetMaxRecordBytes(),
		},
	}
	if d := t.GetConfig().GetRetentionAge(); d != nil {
		out.Config.RetentionAge = d.AsDuration()
	}
	if ts := t.GetCreated(); ts != nil {
		out.Created = ts.AsTime()
	}
	return out
}

// duration converts d for a request; nil for zero (unset).
func duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// MovePartition moves partition's replica from node from to node to (node
// IDs) and returns the partition's replicas after the move. It returns
// once the old replica has left the partition's Raft group (the old node
// may be stopped then), which can take as long as copying the partition
// to the new one; cut short by ctx, the move stays under way, and the same
// call resumes it.
func (c *Client) MovePartition(ctx context.Context, topic string, partition int, from, to string) ([]string, error) {
	resp, err := appendCall(ctx, c, "MovePartition", func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.MovePartitionResponse, error) {
		return cl.MovePartition(ctx, &logv1.MovePartitionRequest{Topic: topic, Partition: uint32(partition), FromNode: from, ToNode: to})
	})
	if err != nil {
		return nil, err
	}
	return resp.GetReplicas(), nil
}

// RemoveNode removes a node that is down from the cluster (Raft's voters
// and gossip) and returns the partitions still placed on it, as
// "topic/partition", which MovePartition can move elsewhere.
func (c *Client) RemoveNode(ctx context.Context, nodeID string) (stranded []string, err error) {
	resp, err := appendCall(ctx, c, "RemoveNode", func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.RemoveNodeResponse, error) {
		return cl.RemoveNode(ctx, &logv1.RemoveNodeRequest{NodeId: nodeID})
	})
	if err != nil {
		return nil, err
	}
	for _, p := range resp.GetStranded() {
		stranded = append(stranded, fmt.Sprintf("%s/%d", p.GetTopic(), p.GetPartition()))
	}
	return stranded, nil
}
