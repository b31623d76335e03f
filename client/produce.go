package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Produce appends one record through the leader and returns its offset. It
// retries only while the append certainly did not happen (see the package
// documentation); an append whose fate is unknown fails with
// ErrUnknownOutcome. Topic and Partition say where it goes (ProduceSplit
// also says which partition it went to).
func (c *Client) Produce(ctx context.Context, value []byte, opts ...CallOption) (uint64, error) {
	t, err := targetOf(opts)
	if err != nil {
		return 0, err
	}
	ctx, recs, end := c.producing(ctx, t.topic, []*logv1.Record{{Value: value}})
	req := &logv1.ProduceRequest{Record: recs[0], Topic: t.topic, Partition: t.wirePartition()}
	off, err := c.append(ctx, "Produce", c.destOf(ctx, t, nil), func(ctx context.Context, cl logv1connect.LogServiceClient) (uint64, error) {
		resp, err := cl.Produce(ctx, req)
		if err != nil {
			return 0, err
		}
		return resp.GetOffset(), nil
	})
	end(err)
	return off, err
}

// ProduceBatch appends values as one durable write through the leader; they
// get consecutive offsets starting at the returned base. Retries are as for
// Produce: the batch is appended whole or not at all, so an unknown outcome
// concerns all of it.
func (c *Client) ProduceBatch(ctx context.Context, values [][]byte, opts ...CallOption) (uint64, error) {
	t, err := targetOf(opts)
	if err != nil {
		return 0, err
	}
	res, err := c.produceBatch(ctx, t, valueRecords(values))
	return res.Offset, err
}

// ProduceRecords is ProduceBatch for records with a key and headers as well
// as a value. Their offset and time are set by the server (a producer's own
// time belongs in a header). A record that fails ValidateRecord fails the
// call with ErrInvalidRecord before anything is sent. The records go as one
// request to one partition: the one named with Partition, else the one
// their keys map to; keyed records of different partitions are refused
// (InvalidArgument): ProduceSplit sends them as one request per partition.
func (c *Client) ProduceRecords(ctx context.Context, records []*logv1.Record, opts ...CallOption) (uint64, error) {
	t, err := targetOf(opts)
	if err != nil {
		return 0, err
	}
	if err := checkRecords(records); err != nil {
		return 0, err
	}
	res, err := c.produceBatch(ctx, t, records)
	return res.Offset, err
}

// Appended is where one record of ProduceSplit or of a Producer's Send
// went: its partition and offset, or Err when its request failed.
type Appended struct {
	Partition int
	Offset    uint64
	// Err is the failure of the record's request; nil when it was
	// appended. With ErrUnknownOutcome the record may have been appended.
	Err error
}

// ProduceSplit appends records to a topic the way ProduceRecords does,
// except that records whose keys map to different partitions do not fail:
// unless Partition names one, the client learns the topic's partition
// count (DescribeTopic, cached per topic for Config.RefreshInterval),
// sends each partition's keyed records as one request naming it, in the
// order given, and the records without a key as one more request that
// names none (the server places it). The requests go at once, and each is
// retried as ProduceRecords is. It returns where each record went, in the
// order given, and the first failure in that order: records of the other
// requests may have been appended all the same (each Appended says). When
// the server refuses a request with NotFound or InvalidArgument, which a
// stale partition count explains, the client asks for the count again and,
// if it changed, splits and sends that request's records again, once.
func (c *Client) ProduceSplit(ctx context.Context, records []*logv1.Record, opts ...CallOption) ([]Appended, error) {
	t, err := targetOf(opts)
	if err != nil {
		return nil, err
	}
	if err := checkRecords(records); err != nil {
		return nil, err
	}
	out := make([]Appended, len(records))
	idx := make([]int, len(records))
	for i := range idx {
		idx[i] = i
	}
	c.produceSplit(ctx, t, records, idx, out, true)
	for _, a := range out {
		if a.Err != nil {
			return out, a.Err
		}
	}
	return out, nil
}

// produceSplit appends records[idx] split by partition and fills their
// entries of out. again allows one more split after a refusal a stale
// partition count explains.
func (c *Client) produceSplit(ctx context.Context, t target, all []*logv1.Record, idx []int, out []Appended, again bool) {
	records := make([]*logv1.Record, len(idx))
	for i, j := range idx {
		records[i] = all[j]
	}
	n := 0
	if !t.partitionSet {
		n = c.partitionCount(ctx, t.topic)
	}
	parts := split(t, records, n)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			pidx := idx
			if p.idx != nil {
				pidx = make([]int, len(p.idx))
				for i, j := range p.idx {
					pidx[i] = idx[j]
				}
			}
			res, err := c.produceBatch(ctx, p.target(t), p.records(records))
			if err != nil && again && staleCount(err) && !t.partitionSet {
				c.forgetTopic(t.topic)
				if m := c.partitionCount(ctx, t.topic); m != n {
					c.produceSplit(ctx, t, all, pidx, out, false)
					return
				}
			}
			for k, j := range pidx {
				if err != nil {
					out[j] = Appended{Partition: p.partition, Err: err}
				} else {
					out[j] = Appended{Partition: res.Partition, Offset: res.Offset + uint64(k)}
				}
			}
		})
	}
	wg.Wait()
}

// staleCount reports a refusal a stale partition count explains: a
// partition that does not exist (NotFound), keys of several partitions in
// one request (InvalidArgument). Nothing was written.
func staleCount(err error) bool {
	if errors.Is(err, ErrUnknownOutcome) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeNotFound, connect.CodeInvalidArgument:
		return true
	}
	return false
}

func checkRecords(records []*logv1.Record) error {
	if len(records) == 0 {
		return fmt.Errorf("%w: no records", ErrInvalidRecord)
	}
	return validateRecords(records)
}

// batchResult is where one ProduceBatch went.
type batchResult struct {
	Partition int
	Offset    uint64 // of the first record
}

func (c *Client) produceBatch(ctx context.Context, t target, records []*logv1.Record) (_ batchResult, err error) {
	ctx, records, end := c.producing(ctx, t.topic, records)
	defer func() { end(err) }()
	req := &logv1.ProduceBatchRequest{Records: records, Topic: t.topic, Partition: t.wirePartition()}
	return appendTo(ctx, c, "ProduceBatch", c.destOf(ctx, t, records), func(ctx context.Context, cl logv1connect.LogServiceClient) (batchResult, error) {
		resp, err := cl.ProduceBatch(ctx, req)
		if err != nil {
			return batchResult{}, err
		}
		if int(resp.GetCount()) != len(records) {
			return batchResult{}, fmt.Errorf("the server reports %d records appended of %d", resp.GetCount(), len(records))
		}
		return batchResult{Partition: int(resp.GetPartition()), Offset: resp.GetBaseOffset()}, nil
	})
}

// append runs call against the leader of d's partition (nil: the
// cluster's leader) with the append retry policy.
func (c *Client) append(ctx context.Context, rpc string, d *dest, call func(context.Context, logv1connect.LogServiceClient) (uint64, error)) (uint64, error) {
	return appendTo(ctx, c, rpc, d, call)
}

// appendCall runs a call with side effects against the cluster's leader
// with the append retry policy: retried only while it certainly did not
// happen.
func appendCall[T any](ctx context.Context, c *Client, rpc string, call func(context.Context, logv1connect.LogServiceClient) (T, error)) (T, error) {
	return appendTo(ctx, c, rpc, nil, call)
}

// appendTo is appendCall for an append to d's partition: each attempt goes
// to the partition's leader as the client knows it then, or while it knows
// none, to the cluster's leader, which forwards it. A failure a change of
// leader explains makes the next attempt (or call) ask where the
// partition's leader is.
func appendTo[T any](ctx context.Context, c *Client, rpc string, d *dest, call func(context.Context, logv1connect.LogServiceClient) (T, error)) (T, error) {
	var zero T
	if c.closed.Load() {
		return zero, ErrClosed
	}
	var last error
	for attempt := 0; ; attempt++ {
		var direct string
		var routeGen uint64
		if d != nil {
			direct, routeGen = c.partitionLeader(ctx, d)
		}
		if err := ctx.Err(); err != nil {
			// Nothing left the client for this attempt.
			if last == nil {
				return zero, err
			}
			return zero, c.giveUp(ctx, last)
		}
		addr, gen := c.writeTarget()
		if direct != "" {
			addr = direct
		}
		v, err := call(ctx, c.client(addr))
		if err == nil {
			return v, nil
		}
		if d != nil && leadershipMoved(err) {
			c.invalidate(d.topic, routeGen)
		}
		last = fmt.Errorf("client: %s on %s: %w", rpc, addr, err)
		switch classifyAppend(ctx, err) {
		case final:
			return zero, last
		case unknown:
			return zero, fmt.Errorf("%w: %w", ErrUnknownOutcome, last)
		}
		c.logger.Debug("append refused, retrying", "rpc", rpc, "addr", addr, "attempt", attempt, "err", err)
		c.afterFailure(ctx, addr, gen, err)
		if attempt >= c.cfg.Retries || !c.sleep(ctx, attempt) {
			return zero, c.giveUp(ctx, last)
		}
	}
}
