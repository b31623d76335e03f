package client

import (
	"context"
	"fmt"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Produce appends one record through the leader and returns its offset. It
// retries only while the append certainly did not happen (see the package
// documentation); an append whose fate is unknown fails with
// ErrUnknownOutcome.
func (c *Client) Produce(ctx context.Context, value []byte) (uint64, error) {
	req := &logv1.ProduceRequest{Record: &logv1.Record{Value: value}}
	return c.append(ctx, "Produce", func(ctx context.Context, cl logv1connect.LogServiceClient) (uint64, error) {
		resp, err := cl.Produce(ctx, req)
		if err != nil {
			return 0, err
		}
		return resp.GetOffset(), nil
	})
}

// ProduceBatch appends values as one durable write through the leader; they
// get consecutive offsets starting at the returned base. Retries are as for
// Produce: the batch is appended whole or not at all, so an unknown outcome
// concerns all of it.
func (c *Client) ProduceBatch(ctx context.Context, values [][]byte) (uint64, error) {
	return c.produceBatch(ctx, valueRecords(values))
}

// ProduceRecords is ProduceBatch for records with a key and headers as well
// as a value. Their offset and time are set by the server (a producer's own
// time belongs in a header). A record that fails ValidateRecord fails the
// call with ErrInvalidRecord before anything is sent.
func (c *Client) ProduceRecords(ctx context.Context, records []*logv1.Record) (uint64, error) {
	if len(records) == 0 {
		return 0, fmt.Errorf("%w: no records", ErrInvalidRecord)
	}
	if err := validateRecords(records); err != nil {
		return 0, err
	}
	return c.produceBatch(ctx, records)
}

func (c *Client) produceBatch(ctx context.Context, records []*logv1.Record) (uint64, error) {
	req := &logv1.ProduceBatchRequest{Records: records}
	return c.append(ctx, "ProduceBatch", func(ctx context.Context, cl logv1connect.LogServiceClient) (uint64, error) {
		resp, err := cl.ProduceBatch(ctx, req)
		if err != nil {
			return 0, err
		}
		if int(resp.GetCount()) != len(records) {
			return 0, fmt.Errorf("the server reports %d records appended of %d", resp.GetCount(), len(records))
		}
		return resp.GetBaseOffset(), nil
	})
}

// append runs call against the leader with the append retry policy.
func (c *Client) append(ctx context.Context, rpc string, call func(context.Context, logv1connect.LogServiceClient) (uint64, error)) (uint64, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	var last error
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			// Nothing left the client for this attempt.
			if last == nil {
				return 0, err
			}
			return 0, c.giveUp(ctx, last)
		}
		addr, gen := c.writeTarget()
		off, err := call(ctx, c.client(addr))
		if err == nil {
			return off, nil
		}
		last = fmt.Errorf("client: %s on %s: %w", rpc, addr, err)
		switch classifyAppend(ctx, err) {
		case final:
			return 0, last
		case unknown:
			return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, last)
		}
		c.logger.Debug("append refused, retrying", "rpc", rpc, "addr", addr, "attempt", attempt, "err", err)
		c.afterFailure(ctx, addr, gen, err)
		if attempt >= c.cfg.Retries || !c.sleep(ctx, attempt) {
			return 0, c.giveUp(ctx, last)
		}
	}
}
