package client

import (
	"context"
	"fmt"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Stats describes the log (Topic and Partition say which; default:
// partition 0 of the topic "default") as the leader sees it (its bounds
// are the freshest), or while no leader answers, as another server does.
func (c *Client) Stats(ctx context.Context, opts ...CallOption) (*logv1.GetStatsResponse, error) {
	t, err := targetOf(opts)
	if err != nil {
		return nil, err
	}
	return read(ctx, c, "GetStats", c.leaderTarget, getStats(t))
}

// ServerStats asks the server at addr (a cluster member or any other node)
// for its stats: its own bounds, size and node ID. It retries on that
// server only.
func (c *Client) ServerStats(ctx context.Context, addr string, opts ...CallOption) (*logv1.GetStatsResponse, error) {
	t, err := targetOf(opts)
	if err != nil {
		return nil, err
	}
	return read(ctx, c, "GetStats", func(string) (string, uint64) { return addr, c.generation() }, getStats(t))
}

func getStats(t target) func(context.Context, logv1connect.LogServiceClient) (*logv1.GetStatsResponse, error) {
	req := &logv1.GetStatsRequest{Topic: t.topic, Partition: uint32(t.partition)}
	return func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.GetStatsResponse, error) {
		return cl.GetStats(ctx, req)
	}
}

// WhoAmI asks who the servers think the caller is and what the ACL lets
// it do. Every server answers the same; the leader is asked first, so the
// call also opens the connection appends will use.
func (c *Client) WhoAmI(ctx context.Context) (*logv1.WhoAmIResponse, error) {
	return read(ctx, c, "WhoAmI", c.leaderTarget, func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.WhoAmIResponse, error) {
		return cl.WhoAmI(ctx, &logv1.WhoAmIRequest{})
	})
}

// OffsetForTime returns the offset of the first retained record whose time
// is at or after t, and that record's time; when there is none yet, the
// log's next offset and the zero time. Topic and Partition say which
// partition (default: partition 0 of the topic "default"). The leader answers (a follower may
// not have the latest records yet), or while none answers, another server.
func (c *Client) OffsetForTime(ctx context.Context, t time.Time, opts ...CallOption) (uint64, time.Time, error) {
	tg, err := targetOf(opts)
	if err != nil {
		return 0, time.Time{}, err
	}
	req := &logv1.GetOffsetForTimeRequest{Time: timestamp(t), Topic: tg.topic, Partition: uint32(tg.partition)}
	resp, err := read(ctx, c, "GetOffsetForTime", c.leaderTarget, func(ctx context.Context, cl logv1connect.LogServiceClient) (*logv1.GetOffsetForTimeResponse, error) {
		return cl.GetOffsetForTime(ctx, req)
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	var at time.Time
	if resp.GetTime() != nil {
		at = resp.GetTime().AsTime()
	}
	return resp.GetOffset(), at, nil
}

// read runs a call without side effects with the read retry policy; target
// picks each attempt's server (avoid is the one the previous attempt
// failed on).
func read[T any](ctx context.Context, c *Client, rpc string, target func(avoid string) (string, uint64),
	call func(context.Context, logv1connect.LogServiceClient) (T, error)) (T, error) {
	var zero T
	if c.closed.Load() {
		return zero, ErrClosed
	}
	var last error
	avoid := ""
	for attempt := 0; ; attempt++ {
		addr, gen := target(avoid)
		v, err := call(ctx, c.client(addr))
		if err == nil {
			return v, nil
		}
		last = fmt.Errorf("client: %s on %s: %w", rpc, addr, err)
		if classifyRead(ctx, err) != retry {
			return zero, last
		}
		avoid = addr
		c.afterFailure(ctx, addr, gen, err)
		if attempt >= c.cfg.Retries || !c.sleep(ctx, attempt) {
			return zero, c.giveUp(ctx, last)
		}
	}
}
