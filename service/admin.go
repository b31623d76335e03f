package service

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/proglog/proglog/catalog"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// checkTopic validates a topic RPC's name (InvalidArgument) and the
// caller's right to perform action on it.
func (s *Service) checkTopic(ctx context.Context, name, action string) error {
	if err := catalog.ValidName(name); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("topic %q: %w", name, err))
	}
	return s.authorize(ctx, name, action)
}

// forwardChange sends a change to the cluster (what names it, e.g. `topic
// "orders"`) that this node refused with err (it does not lead the
// system group) to the leader, when Config.Forward names one: the leader's
// answer, error or not, becomes the call's. ok is false when the change is
// not forwarded.
func forwardChange[Resp any](ctx context.Context, s *Service, what string, err error, call func(logv1connect.LogServiceClient) (*Resp, error)) (_ *Resp, ok bool, _ error) {
	leader, ok := s.leaderFor(ctx, err)
	if !ok {
		return nil, false, nil
	}
	resp, err := call(leader)
	if err != nil && !connect.IsWireError(err) {
		if ctx.Err() != nil {
			return nil, true, toConnect(ctx, ctx.Err())
		}
		return nil, true, connect.NewError(connect.CodeUnavailable, fmt.Errorf(
			"%s: forwarding the change to the leader failed; it may or may not have been made: %w", what, err))
	}
	return resp, true, err
}

// topicConfig checks the settings of a CreateTopic request.
func (s *Service) topicConfig(name string, c *logv1.TopicConfig) (catalog.Config, error) {
	cfg := catalog.Config{RetentionBytes: c.GetRetentionBytes(), MaxRecordBytes: c.GetMaxRecordBytes()}
	var err error
	if cfg.RetentionAge, err = retentionAge(name, c.GetRetentionAge()); err != nil {
		return cfg, err
	}
	return cfg, s.checkMaxRecordBytes(name, cfg.MaxRecordBytes)
}

func retentionAge(name string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidArgument("topic %q: retention_age: %v", name, err)
	}
	if age := d.AsDuration(); age >= 0 {
		return age, nil
	}
	return 0, invalidArgument("topic %q: retention_age %v is negative", name, d.AsDuration())
}

// checkMaxRecordBytes refuses a topic record limit above the node's.
func (s *Service) checkMaxRecordBytes(name string, n uint32) error {
	if uint64(n) > uint64(s.maxRecordBytes) {
		return invalidArgument("topic %q: max_record_bytes %d exceeds this node's limit of %d bytes", name, n, s.maxRecordBytes)
	}
	return nil
}

// topicProto describes t for a response.
func topicProto(t *catalog.Topic) *logv1.Topic {
	out := &logv1.Topic{
		Name:              t.Name,
		Partitions:        uint32(len(t.Partitions)),
		ReplicationFactor: uint32(max(t.ReplicationFactor, 0)),
		Config: &logv1.TopicConfig{
			RetentionBytes: t.Config.RetentionBytes,
			MaxRecordBytes: t.Config.MaxRecordBytes,
		},
	}
	if t.Config.RetentionAge != 0 {
		out.Config.RetentionAge = durationpb.New(t.Config.RetentionAge)
	}
	if !t.Created.IsZero() {
		out.Created = timestamppb.New(t.Created)
	}
	return out
}

// CreateTopic creates a topic (on the system group's leader: a follower
// forwards the request there).
func (s *Service) CreateTopic(ctx context.Context, req *logv1.CreateTopicRequest) (*logv1.CreateTopicResponse, error) {
	name := req.GetName()
	if err := s.checkTopic(ctx, name, ActionAdmin); err != nil {
		return nil, err
	}
	spec := TopicSpec{Name: name, Partitions: int(req.GetPartitions()), ReplicationFactor: int(req.GetReplicationFactor())}
	if spec.Partitions == 0 {
		spec.Partitions = 1
	}
	if spec.Partitions > catalog.MaxPartitions {
		return nil, invalidArgument("topic %q: %d partitions, at most %d", name, spec.Partitions, catalog.MaxPartitions)
	}
	var err error
	if spec.Config, err = s.topicConfig(name, req.GetConfig()); err != nil {
		return nil, err
	}
	t, err := s.topics.Create(ctx, spec)
	if err != nil {
		if resp, ok, err := forwardChange(ctx, s, fmt.Sprintf("topic %q", name), err, func(leader logv1connect.LogServiceClient) (*logv1.CreateTopicResponse, error) {
			return leader.CreateTopic(ctx, req)
		}); ok {
			return resp, err
		}
		return nil, topicErr(ctx, name, -1, err)
	}
	return &logv1.CreateTopicResponse{Topic: topicProto(t)}, nil
}

// ListTopics lists the topics the caller may consume or produce to.
func (s *Service) ListTopics(ctx context.Context, _ *logv1.ListTopicsRequest) (*logv1.ListTopicsResponse, error) {
	id := identityOf(ctx)
	resp := &logv1.ListTopicsResponse{}
	for _, t := range s.topics.List() {
		if id.forwarded || s.authz.Allowed(id.subject, t.Name, ActionConsume) || s.authz.Allowed(id.subject, t.Name, ActionProduce) {
			resp.Topics = append(resp.Topics, topicProto(t))
		}
	}
	return resp, nil
}

// DescribeTopic reports a topic's settings and partitions, as this node
// knows them.
func (s *Service) DescribeTopic(ctx context.Context, req *logv1.DescribeTopicRequest) (*logv1.DescribeTopicResponse, error) {
	name := req.GetName()
	if err := s.checkTopic(ctx, name, ActionConsume); err != nil {
		return nil, err
	}
	t, err := s.topic(ctx, name)
	if err != nil {
		return nil, err
	}
	parts, err := s.topics.Describe(ctx, name)
	if err != nil {
		return nil, topicErr(ctx, name, -1, err)
	}
	resp := &logv1.DescribeTopicResponse{Topic: topicProto(t), Partitions: make([]*logv1.PartitionInfo, len(parts))}
	for i, p := range parts {
		info := &logv1.PartitionInfo{
			Partition:    uint32(max(p.Index, 0)),
			Leader:       p.Leader,
			Replicas:     make([]*logv1.Replica, len(p.Replicas)),
			LowestOffset: p.Lowest,
			NextOffset:   p.Next,
			SizeBytes:    p.SizeBytes,
		}
		for j, r := range p.Replicas {
			info.Replicas[j] = &logv1.Replica{NodeId: r.NodeID, RpcAddr: r.RPCAddr, IsLeader: r.IsLeader, InSync: r.InSync}
		}
		resp.Partitions[i] = info
	}
	return resp, nil
}

// UpdateTopic changes the settings the request sets.
func (s *Service) UpdateTopic(ctx context.Context, req *logv1.UpdateTopicRequest) (*logv1.UpdateTopicResponse, error) {
	name := req.GetName()
	if err := s.checkTopic(ctx, name, ActionAdmin); err != nil {
		return nil, err
	}
	u := TopicUpdate{RetentionBytes: req.RetentionBytes, MaxRecordBytes: req.MaxRecordBytes}
	if req.GetRetentionAge() != nil {
		age, err := retentionAge(name, req.GetRetentionAge())
		if err != nil {
			return nil, err
		}
		u.RetentionAge = &age
	}
	if u.MaxRecordBytes != nil {
		if err := s.checkMaxRecordBytes(name, *u.MaxRecordBytes); err != nil {
			return nil, err
		}
	}
	t, err := s.topics.Update(ctx, name, u)
	if err != nil {
		if resp, ok, err := forwardChange(ctx, s, fmt.Sprintf("topic %q", name), err, func(leader logv1connect.LogServiceClient) (*logv1.UpdateTopicResponse, error) {
			return leader.UpdateTopic(ctx, req)
		}); ok {
			return resp, err
		}
		return nil, topicErr(ctx, name, -1, err)
	}
	return &logv1.UpdateTopicResponse{Topic: topicProto(t)}, nil
}

// DeleteTopic deletes a topic and its records on every node.
func (s *Service) DeleteTopic(ctx context.Context, req *logv1.DeleteTopicRequest) (*logv1.DeleteTopicResponse, error) {
	name := req.GetName()
	if err := s.checkTopic(ctx, name, ActionAdmin); err != nil {
		return nil, err
	}
	if err := s.topics.Delete(ctx, name); err != nil {
		if resp, ok, err := forwardChange(ctx, s, fmt.Sprintf("topic %q", name), err, func(leader logv1connect.LogServiceClient) (*logv1.DeleteTopicResponse, error) {
			return leader.DeleteTopic(ctx, req)
		}); ok {
			return resp, err
		}
		return nil, topicErr(ctx, name, -1, err)
	}
	return &logv1.DeleteTopicResponse{}, nil
}

// MovePartition moves one replica of a partition (admin on the topic); the
// system group's leader runs the move, and a follower forwards it there.
func (s *Service) MovePartition(ctx context.Context, req *logv1.MovePartitionRequest) (*logv1.MovePartitionResponse, error) {
	name := req.GetTopic()
	if err := s.checkTopic(ctx, name, ActionAdmin); err != nil {
		return nil, err
	}
	if req.GetFromNode() == "" || req.GetToNode() == "" {
		return nil, invalidArgument("from_node and to_node are required")
	}
	t, err := s.topics.Move(ctx, name, int(req.GetPartition()), req.GetFromNode(), req.GetToNode())
	if err != nil {
		if resp, ok, err := forwardChange(ctx, s, fmt.Sprintf("topic %q", name), err, func(leader logv1connect.LogServiceClient) (*logv1.MovePartitionResponse, error) {
			return leader.MovePartition(ctx, req)
		}); ok {
			return resp, err
		}
		return nil, topicErr(ctx, name, int(req.GetPartition()), err)
	}
	return &logv1.MovePartitionResponse{Replicas: t.Partitions[req.GetPartition()].Replicas}, nil
}

// RemoveNode removes a node that is down from the cluster, on the system
// group's leader (a follower forwards the request there). It needs the
// admin action on every topic ("*"): a node hosts partitions of any.
func (s *Service) RemoveNode(ctx context.Context, req *logv1.RemoveNodeRequest) (*logv1.RemoveNodeResponse, error) {
	if id := identityOf(ctx); !id.forwarded && !s.authz.AllowedCluster(id.subject, ActionAdmin) {
		return nil, denied(id, `"admin" on every topic`)
	}
	nodeID := req.GetNodeId()
	if nodeID == "" {
		return nil, invalidArgument("node_id is required")
	}
	if s.removeNode == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("node %q: this node runs alone; there is no cluster to remove a node from", nodeID))
	}
	stranded, err := s.removeNode(ctx, nodeID)
	if err != nil {
		if resp, ok, err := forwardChange(ctx, s, fmt.Sprintf("node %q", nodeID), err, func(leader logv1connect.LogServiceClient) (*logv1.RemoveNodeResponse, error) {
			return leader.RemoveNode(ctx, req)
		}); ok {
			return resp, err
		}
		return nil, toConnect(ctx, err)
	}
	resp := &logv1.RemoveNodeResponse{}
	for _, p := range stranded {
		resp.Stranded = append(resp.Stranded, &logv1.PartitionRef{Topic: p.Topic, Partition: uint32(p.Partition)})
	}
	servers, err := s.GetServers(ctx, &logv1.GetServersRequest{})
	if err != nil {
		return nil, err
	}
	resp.Servers = servers.GetServers()
	return resp, nil
}
