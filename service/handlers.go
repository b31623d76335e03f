package service

import (
	"context"
	"errors"
	"fmt"
	"net"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// checkValue rejects a record the log would refuse, before it costs any
// disk work. index names the record in a batch (-1 for a single record).
func (s *Service) checkValue(index int, value []byte) error {
	if len(value) <= s.maxRecordBytes {
		return nil
	}
	if index < 0 {
		return invalidArgument("record of %d bytes exceeds the limit of %d bytes", len(value), s.maxRecordBytes)
	}
	return invalidArgument("record %d of %d bytes exceeds the limit of %d bytes", index, len(value), s.maxRecordBytes)
}

// maxBatchRecords caps the records of one request: a message of empty
// records costs the log a frame each, so 8 MiB of them would otherwise be
// millions of frames in memory.
const maxBatchRecords = 1 << 16

// values checks a batch of records and returns their values.
func (s *Service) values(records []*logv1.Record) ([][]byte, int, error) {
	if len(records) == 0 {
		return nil, 0, invalidArgument("empty batch: send at least one record")
	}
	if len(records) > maxBatchRecords {
		return nil, 0, invalidArgument("batch of %d records exceeds the limit of %d records", len(records), maxBatchRecords)
	}
	values := make([][]byte, len(records))
	size := 0
	for i, r := range records {
		v := r.GetValue()
		if err := s.checkValue(i, v); err != nil {
			return nil, 0, err
		}
		values[i] = v
		size += len(v)
	}
	return values, size, nil
}

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

// forwardBatch sends values to the leader as one ProduceBatch.
func forwardBatch(ctx context.Context, leader logv1connect.LogServiceClient, values [][]byte) (uint64, error) {
	records := make([]*logv1.Record, len(values))
	for i, v := range values {
		records[i] = &logv1.Record{Value: v}
	}
	resp, err := leader.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: records})
	if err != nil {
		return 0, forwardFailed(err)
	}
	if int(resp.GetCount()) != len(values) {
		return 0, fmt.Errorf("service: the leader appended %d of %d records", resp.GetCount(), len(values))
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
	value := req.GetRecord().GetValue()
	if err := s.checkValue(-1, value); err != nil {
		return nil, err
	}
	off, err := s.log.Append(context.WithoutCancel(ctx), value)
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			resp, err := leader.Produce(ctx, req)
			return resp, forwardFailed(err)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(1, len(value))
	return &logv1.ProduceResponse{Offset: off}, nil
}

// ProduceBatch appends several records as one durable write.
func (s *Service) ProduceBatch(ctx context.Context, req *logv1.ProduceBatchRequest) (_ *logv1.ProduceBatchResponse, err error) {
	defer func() { err = appendFailed(ctx, err) }() // every failure says what became of the records
	values, size, err := s.values(req.GetRecords())
	if err != nil {
		return nil, err
	}
	base, err := s.log.AppendBatch(context.WithoutCancel(ctx), values)
	if err != nil {
		if leader, ok := s.leaderFor(ctx, err); ok {
			resp, err := leader.ProduceBatch(ctx, req)
			return resp, forwardFailed(err)
		}
		return nil, toConnect(ctx, err)
	}
	s.metrics.appended(len(values), size)
	return &logv1.ProduceBatchResponse{BaseOffset: base, Count: uint32(len(values))}, nil
}

// Consume reads one record.
func (s *Service) Consume(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.ConsumeResponse, error) {
	rec, err := s.log.Read(req.GetOffset())
	if err != nil {
		return nil, toConnect(ctx, err)
	}
	return &logv1.ConsumeResponse{Record: &logv1.Record{Value: rec.Value, Offset: rec.Offset}}, nil
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
func (s *Service) GetStats(context.Context, *logv1.GetStatsRequest) (*logv1.GetStatsResponse, error) {
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

// GetOffsetForTime answers which offset was at a time.
func (s *Service) GetOffsetForTime(ctx context.Context, req *logv1.GetOffsetForTimeRequest) (*logv1.GetOffsetForTimeResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("GetOffsetForTime: not yet"))
}
