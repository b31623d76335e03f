package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"connectrpc.com/connect"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
)

// statsWriteWait bounds how long GetStats waits for the store to hold
// every committed record.
const statsWriteWait = time.Second

// maxBatchRecords caps the records of one request: a message of empty
// records costs the log a frame each, so 8 MiB of them would otherwise be
// millions of frames in memory.
const maxBatchRecords = 1 << 16

// leaderFor asks Config.Forward whether an append the log refused with err
// (or a topic change Topics refused) should go to the leader instead. A
// request a peer already forwarded is not forwarded again (leadership moved
// meanwhile, and the first node's client retries, instead of the request
// hopping between stale views), unless it was relayed by a node that could
// not know the leader: that one goes on to the leader, unmarked.
func (s *Service) leaderFor(ctx context.Context, err error) (logv1connect.LogServiceClient, bool) {
	if s.forward == nil || err == nil || isForwarded(ctx) && !isRelayed(ctx) {
		return nil, false
	}
	return s.forward(err)
}

// forwardBatch sends records, as a client sent them, to partition p of
// topic on the node peer (its leader) as one ProduceBatch.
func forwardBatch(ctx context.Context, peer logv1connect.LogServiceClient, topic string, p int, recs []*logv1.Record) (uint64, error) {
	resp, err := peer.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: recs, Topic: topic, Partition: proto.Uint32(uint32(p))})
	if err != nil {
		return 0, forwardFailed(err)
	}
	if int(resp.GetCount()) != len(recs) {
		return 0, fmt.Errorf("service: the leader appended %d of %d records", resp.GetCount(), len(recs))
	}
	return resp.GetBaseOffset(), nil
}

// forwardFailed keeps the leader's own answers (an error it sent) and
// turns a failure on the way (the leader died or could not be reached) into
// Unavailable. Every failure carries an AppendOutcome: the leader's own
// (forwardedOutcome for an answer without one); not applied when the
// connection to the leader never opened; unknown otherwise, as the leader
// may have committed the records before the connection broke.
func forwardFailed(err error) error {
	if err == nil {
		return nil
	}
	if ce := (*connect.Error)(nil); errors.As(err, &ce) && connect.IsWireError(err) {
		return withAppendOutcome(err, forwardedOutcome(ce.Code()))
	}
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		// The connection to the leader never opened: nothing was sent.
		return withAppendOutcome(connect.NewError(connect.CodeUnavailable, fmt.Errorf(
			"forwarding to the leader failed before sending; nothing was written: %w", err)),
			logv1.AppendOutcome_OUTCOME_NOT_APPLIED)
	}
	return withAppendOutcome(connect.NewError(connect.CodeUnavailable, fmt.Errorf(
		"forwarding to the leader failed; the write may or may not have been committed, a retry may duplicate it: %w", err)),
		logv1.AppendOutcome_OUTCOME_UNKNOWN)
}

// forwardedOutcome is the outcome of a leader's answer that carries none.
// The leader's produce handlers put one on every failure, so such an
// answer comes from before them: its authentication or ACL
// (Unauthenticated, PermissionDenied), a request it could not take
// (ResourceExhausted for its message limit, InvalidArgument,
// Unimplemented), none of which writes. Anything else the follower cannot
// vouch for.
func forwardedOutcome(code connect.Code) logv1.AppendOutcome_Outcome {
	switch code {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeResourceExhausted,
		connect.CodeInvalidArgument, connect.CodeUnimplemented:
		return logv1.AppendOutcome_OUTCOME_NOT_APPLIED
	}
	return logv1.AppendOutcome_OUTCOME_UNKNOWN
}

// Produce appends one record to the partition choosePartition picks. The
// append is not cancelled with the request: once started it completes, so
// a shutdown finishes in-flight produces and a client that left cannot
// half-write a record.
func (s *Service) Produce(ctx context.Context, req *logv1.ProduceRequest) (_ *logv1.ProduceResponse, err error) {
	defer func() { err = appendFailed(ctx, err) }() // every failure says what became of the record
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionProduce); err != nil {
		return nil, err
	}
	if req.GetRecord() == nil {
		return nil, invalidArgument("record is required")
	}
	t, err := s.topic(ctx, name)
	if err != nil {
		return nil, err
	}
	rec, size, err := record(-1, req.GetRecord(), new([]logstore.Header), s.recordLimit(t))
	if err != nil {
		return nil, err
	}
	p, err := s.choosePartition(t, req.Partition, []logstore.Record{rec})
	if err != nil {
		return nil, err
	}
	produced(ctx, name, p, 1)
	// Forwarded, the request names its partition: the peer does not
	// choose again.
	forward := func(peer logv1connect.LogServiceClient) (*logv1.ProduceResponse, error) {
		forwarded(ctx)
		resp, err := peer.Produce(ctx, &logv1.ProduceRequest{Record: req.GetRecord(), Topic: name, Partition: proto.Uint32(uint32(p))})
		if err != nil {
			return nil, forwardFailed(err)
		}
		resp.Partition = uint32(p)
		return resp, nil
	}
	to, err := s.produceTarget(ctx, name, p)
	if err != nil {
		return nil, err
	}
	if to.peer != nil {
		return forward(to.peer)
	}
	off, err := to.log.AppendRecords(context.WithoutCancel(ctx), []logstore.Record{rec})
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			return forward(leader)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(1, size)
	return &logv1.ProduceResponse{Offset: off, Partition: uint32(p)}, nil
}

// ProduceBatch appends several records to one partition as one durable
// write.
func (s *Service) ProduceBatch(ctx context.Context, req *logv1.ProduceBatchRequest) (_ *logv1.ProduceBatchResponse, err error) {
	defer func() { err = appendFailed(ctx, err) }() // every failure says what became of the records
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionProduce); err != nil {
		return nil, err
	}
	t, err := s.topic(ctx, name)
	if err != nil {
		return nil, err
	}
	recs, size, err := records(req.GetRecords(), s.recordLimit(t))
	if err != nil {
		return nil, err
	}
	p, err := s.choosePartition(t, req.Partition, recs)
	if err != nil {
		return nil, err
	}
	produced(ctx, name, p, len(recs))
	forward := func(peer logv1connect.LogServiceClient) (*logv1.ProduceBatchResponse, error) {
		forwarded(ctx)
		base, err := forwardBatch(ctx, peer, name, p, req.GetRecords())
		if err != nil {
			return nil, err
		}
		return &logv1.ProduceBatchResponse{BaseOffset: base, Count: uint32(len(recs)), Partition: uint32(p)}, nil
	}
	to, err := s.produceTarget(ctx, name, p)
	if err != nil {
		return nil, err
	}
	if to.peer != nil {
		return forward(to.peer)
	}
	base, err := to.log.AppendRecords(context.WithoutCancel(ctx), recs)
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			return forward(leader)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(len(recs), size)
	return &logv1.ProduceBatchResponse{BaseOffset: base, Count: uint32(len(recs)), Partition: uint32(p)}, nil
}

// Consume reads one record of a partition: the one at the offset, or the
// first at or after from_time.
func (s *Service) Consume(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.ConsumeResponse, error) {
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionConsume); err != nil {
		return nil, err
	}
	off := req.GetOffset()
	var t time.Time
	if req.GetFromTime() != nil {
		if off != 0 {
			return nil, invalidArgument("set offset or from_time, not both")
		}
		var err error
		if t, err = fromTime(req.GetFromTime()); err != nil {
			return nil, err
		}
	}
	log, nhe, err := s.readTarget(ctx, name, req.GetPartition())
	if err != nil {
		return nil, err
	}
	if nhe != nil {
		return forwardRead(ctx, s, nhe, func(peer logv1connect.LogServiceClient) (*logv1.ConsumeResponse, error) {
			return peer.Consume(ctx, &logv1.ConsumeRequest{Offset: off, FromTime: req.GetFromTime(), Topic: name, Partition: req.GetPartition()})
		})
	}
	ctx, span := s.readSpan(ctx, name, req.GetPartition())
	defer span.End()
	if req.GetFromTime() != nil {
		if off, err = log.OffsetForTime(ctx, t); err != nil {
			return nil, toConnect(ctx, err)
		}
	}
	if span.IsRecording() {
		span.SetAttributes(attrOffset.Int64(int64(off)))
	}
	rec, err := log.Read(ctx, off)
	if err != nil {
		return nil, toConnect(ctx, err)
	}
	out := new(logv1.Record)
	toProto(&rec, out)
	return &logv1.ConsumeResponse{Record: out}, nil
}

// GetServers lists the cluster's members, or this node as the leader of a
// one-node cluster.
func (s *Service) GetServers(ctx context.Context, _ *logv1.GetServersRequest) (*logv1.GetServersResponse, error) {
	if s.nodes == nil {
		return &logv1.GetServersResponse{Servers: []*logv1.Server{
			{Id: s.nodeID, RpcAddr: s.rpcAddr, IsLeader: true, PartitionLeaders: uint32(s.localPartitions())},
		}}, nil
	}
	nodes, err := s.nodes()
	if err != nil {
		return nil, toConnect(ctx, err)
	}
	resp := &logv1.GetServersResponse{Servers: make([]*logv1.Server, len(nodes))}
	for i, n := range nodes {
		resp.Servers[i] = &logv1.Server{Id: n.ID, RpcAddr: n.RPCAddr, IsLeader: n.IsLeader, PartitionLeaders: uint32(max(n.PartitionLeaders, 0))}
	}
	return resp, nil
}

// localPartitions counts the partitions a node without Config.Nodes
// leads: all it hosts.
func (s *Service) localPartitions() int {
	n := 0
	for _, t := range s.topics.List() {
		for p := range t.Partitions {
			if _, err := s.topics.Partition(t.Name, p); err == nil {
				n++
			}
		}
	}
	return n
}

// GetStats describes a partition's log and this node.
func (s *Service) GetStats(ctx context.Context, req *logv1.GetStatsRequest) (*logv1.GetStatsResponse, error) {
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionConsume); err != nil {
		return nil, err
	}
	log, nhe, err := s.readTarget(ctx, name, req.GetPartition())
	if err != nil {
		return nil, err
	}
	if nhe != nil {
		return forwardRead(ctx, s, nhe, func(peer logv1connect.LogServiceClient) (*logv1.GetStatsResponse, error) {
			return peer.GetStats(ctx, &logv1.GetStatsRequest{Topic: name, Partition: req.GetPartition()})
		})
	}
	// A replicated log writes applied records to its store moments later;
	// waiting for them (briefly: not for a store that cannot write, say on
	// a full disk) makes the sizes count the caller's latest acknowledged
	// produce. (Retention that the last write's segment roll starts may
	// still be running.)
	if _, next := log.Bounds(); next > 0 {
		wctx, cancel := context.WithTimeout(ctx, statsWriteWait)
		_ = log.Wait(wctx, next-1)
		cancel()
	}
	st := log.Stats()
	resp := &logv1.GetStatsResponse{
		LowestOffset: st.Lowest,
		NextOffset:   st.Next,
		SizeBytes:    uint64(max(st.SizeBytes, 0)),
		Segments:     uint32(max(st.Segments, 0)),
		NodeId:       s.nodeID,
		Version:      s.version,
	}
	if r, ok := log.(raftLog); ok {
		members, err := r.Members()
		if err != nil {
			return nil, toConnect(ctx, err)
		}
		resp.Voters = cluster.VoterIDs(members)
	}
	return resp, nil
}

// raftLog is a Log replicated by a Raft group (cluster.Log).
type raftLog interface {
	// Members lists the group's Raft configuration as this replica knows
	// it.
	Members() ([]cluster.Member, error)
}

// WhoAmI reports the caller's identity and what the ACL lets it do.
func (s *Service) WhoAmI(ctx context.Context, _ *logv1.WhoAmIRequest) (*logv1.WhoAmIResponse, error) {
	subject, authenticated := Subject(ctx)
	return &logv1.WhoAmIResponse{
		Subject:       subject,
		Authenticated: authenticated,
		Actions:       s.authz.Actions(subject),
	}, nil
}

// GetOffsetForTime answers which offset of a partition was at a time: the
// first record at or after it, with its time, or the next offset.
func (s *Service) GetOffsetForTime(ctx context.Context, req *logv1.GetOffsetForTimeRequest) (*logv1.GetOffsetForTimeResponse, error) {
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionConsume); err != nil {
		return nil, err
	}
	if req.GetTime() == nil {
		return nil, invalidArgument("time is required")
	}
	t, err := fromTime(req.GetTime())
	if err != nil {
		return nil, err
	}
	log, nhe, err := s.readTarget(ctx, name, req.GetPartition())
	if err != nil {
		return nil, err
	}
	if nhe != nil {
		return forwardRead(ctx, s, nhe, func(peer logv1connect.LogServiceClient) (*logv1.GetOffsetForTimeResponse, error) {
			return peer.GetOffsetForTime(ctx, &logv1.GetOffsetForTimeRequest{Time: req.GetTime(), Topic: name, Partition: req.GetPartition()})
		})
	}
	for attempt := 1; ; attempt++ {
		off, err := log.OffsetForTime(ctx, t)
		if err != nil {
			return nil, toConnect(ctx, err)
		}
		if _, next := log.Bounds(); off >= next {
			return &logv1.GetOffsetForTimeResponse{Offset: off}, nil
		}
		rec, err := log.Read(ctx, off)
		if errors.Is(err, logstore.ErrOutOfRange) && attempt < 3 {
			continue // retention deleted it meanwhile: ask again
		}
		if err != nil {
			return nil, toConnect(ctx, err)
		}
		return &logv1.GetOffsetForTimeResponse{Offset: off, Time: timestamppb.New(rec.Time)}, nil
	}
}
