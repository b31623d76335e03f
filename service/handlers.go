package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"connectrpc.com/connect"

	"google.golang.org/protobuf/types/known/timestamppb"

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
// should go to the leader instead. An append a peer already forwarded is
// not forwarded again: leadership moved meanwhile, and the first node's
// client retries, instead of the request hopping between stale views.
func (s *Service) leaderFor(ctx context.Context, err error) (logv1connect.LogServiceClient, bool) {
	if s.forward == nil || err == nil || isForwarded(ctx) {
		return nil, false
	}
	return s.forward(err)
}

// forwardBatch sends records, as a client sent them, to the leader as one
// ProduceBatch.
func forwardBatch(ctx context.Context, leader logv1connect.LogServiceClient, recs []*logv1.Record) (uint64, error) {
	resp, err := leader.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: recs})
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

// Produce appends one record. The append is not cancelled with the request:
// once started it completes, so a shutdown finishes in-flight produces and
// a client that left cannot half-write a record.
func (s *Service) Produce(ctx context.Context, req *logv1.ProduceRequest) (_ *logv1.ProduceResponse, err error) {
	defer func() { err = appendFailed(ctx, err) }() // every failure says what became of the record
	if req.GetRecord() == nil {
		return nil, invalidArgument("record is required")
	}
	rec, size, err := s.record(-1, req.GetRecord(), new([]logstore.Header))
	if err != nil {
		return nil, err
	}
	off, err := s.log.AppendRecords(context.WithoutCancel(ctx), []logstore.Record{rec})
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			resp, err := leader.Produce(ctx, req)
			return resp, forwardFailed(err)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(1, size)
	return &logv1.ProduceResponse{Offset: off}, nil
}

// ProduceBatch appends several records as one durable write.
func (s *Service) ProduceBatch(ctx context.Context, req *logv1.ProduceBatchRequest) (_ *logv1.ProduceBatchResponse, err error) {
	defer func() { err = appendFailed(ctx, err) }() // every failure says what became of the records
	recs, size, err := s.records(req.GetRecords())
	if err != nil {
		return nil, err
	}
	base, err := s.log.AppendRecords(context.WithoutCancel(ctx), recs)
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			resp, err := leader.ProduceBatch(ctx, req)
			return resp, forwardFailed(err)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(len(recs), size)
	return &logv1.ProduceBatchResponse{BaseOffset: base, Count: uint32(len(recs))}, nil
}

// Consume reads one record: the one at the offset, or the first at or
// after from_time.
func (s *Service) Consume(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.ConsumeResponse, error) {
	off := req.GetOffset()
	if req.GetFromTime() != nil {
		if off != 0 {
			return nil, invalidArgument("set offset or from_time, not both")
		}
		t, err := fromTime(req.GetFromTime())
		if err != nil {
			return nil, err
		}
		if off, err = s.log.OffsetForTime(ctx, t); err != nil {
			return nil, toConnect(ctx, err)
		}
	}
	rec, err := s.log.Read(ctx, off)
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
			{Id: s.nodeID, RpcAddr: s.rpcAddr, IsLeader: true},
		}}, nil
	}
	nodes, err := s.nodes()
	if err != nil {
		return nil, toConnect(ctx, err)
	}
	resp := &logv1.GetServersResponse{Servers: make([]*logv1.Server, len(nodes))}
	for i, n := range nodes {
		resp.Servers[i] = &logv1.Server{Id: n.ID, RpcAddr: n.RPCAddr, IsLeader: n.IsLeader}
	}
	return resp, nil
}

// GetStats describes the log and this node.
func (s *Service) GetStats(ctx context.Context, _ *logv1.GetStatsRequest) (*logv1.GetStatsResponse, error) {
	// A replicated log writes applied records to its store moments later;
	// waiting for them (briefly: not for a store that cannot write, say on
	// a full disk) makes the sizes count the caller's latest acknowledged
	// produce. (Retention that the last write's segment roll starts may
	// still be running.)
	if _, next := s.log.Bounds(); next > 0 {
		wctx, cancel := context.WithTimeout(ctx, statsWriteWait)
		_ = s.log.Wait(wctx, next-1)
		cancel()
	}
	st := s.log.Stats()
	return &logv1.GetStatsResponse{
		LowestOffset: st.Lowest,
		NextOffset:   st.Next,
		SizeBytes:    uint64(max(st.SizeBytes, 0)),
		Segments:     uint32(max(st.Segments, 0)),
		NodeId:       s.nodeID,
		Version:      s.version,
	}, nil
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

// GetOffsetForTime answers which offset was at a time: the first record
// at or after it, with its time, or the next offset.
func (s *Service) GetOffsetForTime(ctx context.Context, req *logv1.GetOffsetForTimeRequest) (*logv1.GetOffsetForTimeResponse, error) {
	if req.GetTime() == nil {
		return nil, invalidArgument("time is required")
	}
	t, err := fromTime(req.GetTime())
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		off, err := s.log.OffsetForTime(ctx, t)
		if err != nil {
			return nil, toConnect(ctx, err)
		}
		if _, next := s.log.Bounds(); off >= next {
			return &logv1.GetOffsetForTimeResponse{Offset: off}, nil
		}
		rec, err := s.log.Read(ctx, off)
		if errors.Is(err, logstore.ErrOutOfRange) && attempt < 3 {
			continue // retention deleted it meanwhile: ask again
		}
		if err != nil {
			return nil, toConnect(ctx, err)
		}
		return &logv1.GetOffsetForTimeResponse{Offset: off, Time: timestamppb.New(rec.Time)}, nil
	}
}
