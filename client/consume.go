package client

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Consume reads the record at offset from a follower (the leader when it is
// alone, or when the follower has not caught up to offset yet).
// Topic and Partition say which partition (default: partition 0 of the
// topic "default").
func (c *Client) Consume(ctx context.Context, offset uint64, opts ...CallOption) (*logv1.Record, error) {
	t, err := targetOf(opts)
	if err != nil {
		return nil, err
	}
	req := &logv1.ConsumeRequest{Offset: offset, Topic: t.topic, Partition: uint32(t.partition)}
	return c.consume(ctx, req, fmt.Sprint(offset), func(err error) bool { return pastEnd(err, offset) })
}

// ConsumeTime reads the first record whose time is at or after t, from a
// follower, or from the leader when the follower has none (it may lag). It
// fails with OutOfRange when there is none yet.
func (c *Client) ConsumeTime(ctx context.Context, t time.Time, opts ...CallOption) (*logv1.Record, error) {
	tg, err := targetOf(opts)
	if err != nil {
		return nil, err
	}
	req := &logv1.ConsumeRequest{FromTime: timestamp(t), Topic: tg.topic, Partition: uint32(tg.partition)}
	return c.consume(ctx, req, "from "+t.UTC().Format(time.RFC3339Nano), func(err error) bool {
		return connect.CodeOf(err) == connect.CodeOutOfRange
	})
}

// consume runs a Consume; lagging reports an answer a follower may give
// for want of records the leader has.
func (c *Client) consume(ctx context.Context, req *logv1.ConsumeRequest, what string, lagging func(error) bool) (*logv1.Record, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	var last error
	avoid := ""
	for attempt := 0; ; attempt++ {
		addr, isLeader, gen := c.readTarget(avoid)
		resp, err := c.client(addr).Consume(ctx, req)
		if err == nil {
			return clipRecord(resp.GetRecord()), nil
		}
		last = fmt.Errorf("client: Consume %s on %s: %w", what, addr, err)
		if lagging(err) {
			if isLeader {
				return nil, last // the leader has every committed record
			}
			if rec, err, ok := c.consumeLeader(ctx, req); ok {
				if err != nil {
					return nil, fmt.Errorf("client: Consume %s on the leader: %w", what, err)
				}
				return rec, nil
			}
		}
		v := classifyRead(ctx, err)
		if v == final && ctx.Err() == nil && lagging(err) {
			v = retry // as classifyReadAt: another server may have it
		}
		if v != retry {
			return nil, last
		}
		avoid = addr
		c.afterFailure(ctx, addr, gen, err)
		if attempt >= c.cfg.Retries || !c.sleep(ctx, attempt) {
			return nil, c.giveUp(ctx, last)
		}
	}
}

// consumeLeader asks the leader; ok is false when none is known or it
// could not be reached (the caller's retry loop goes on).
func (c *Client) consumeLeader(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.Record, error, bool) {
	addr := c.leaderAddr()
	if addr == "" {
		return nil, nil, false
	}
	resp, err := c.client(addr).Consume(ctx, req)
	if err != nil {
		if classifyRead(ctx, err) == retry {
			return nil, nil, false
		}
		return nil, err, true
	}
	return clipRecord(resp.GetRecord()), nil, true
}
