package client

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Consume reads the record at offset from a follower (the leader when it is
// alone, or when the follower has not caught up to offset yet).
func (c *Client) Consume(ctx context.Context, offset uint64) (*logv1.Record, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	req := &logv1.ConsumeRequest{Offset: offset}
	var last error
	avoid := ""
	for attempt := 0; ; attempt++ {
		addr, isLeader, gen := c.readTarget(avoid)
		resp, err := c.client(addr).Consume(ctx, req)
		if err == nil {
			return resp.GetRecord(), nil
		}
		last = fmt.Errorf("client: Consume %d on %s: %w", offset, addr, err)
		if pastEnd(err, offset) {
			if isLeader {
				return nil, last // the leader has every committed record
			}
			if rec, err, ok := c.consumeLeader(ctx, req); ok {
				if err != nil {
					return nil, fmt.Errorf("client: Consume %d on the leader: %w", offset, err)
				}
				return rec, nil
			}
		}
		if classifyReadAt(ctx, err, offset) != retry {
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
		if classifyRead(ctx, err) == retry && !pastEnd(err, req.GetOffset()) {
			return nil, nil, false
		}
		return nil, err, true
	}
	return resp.GetRecord(), nil, true
}

// Tail calls fn with every record from offset from on, in order, following
// the log live until ctx ends, fn returns an error (returned as it is) or a
// failure that cannot be retried. It reads a ConsumeStream from a follower
// and, when the stream breaks, resumes on another server from the record
// after the last one fn received: no gaps, no duplicates. Retries (with
// backoff) are counted per break without progress, so a long tail survives
// any number of failovers.
func (c *Client) Tail(ctx context.Context, from uint64, fn func(*logv1.Record) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	// The tail ends when the client closes, too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	next := from
	started := false // a server has answered for next: it is not past the end
	avoid := ""
	fails := 0
	for {
		addr, isLeader, gen := c.readTarget(avoid)
		progressed, err := c.tailOnce(ctx, addr, next, fn, &next)
		if progressed {
			fails, started = 0, true
		}
		var fnErr *callbackError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.Is(err, ErrSequence):
			return err
		case c.closed.Load():
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		err = fmt.Errorf("client: ConsumeStream from %d on %s: %w", next, addr, err)
		// "Past the end" from the leader before anything was delivered means
		// the caller asked beyond the log; later, or from a follower, the
		// server lags the ones that served us.
		if pastEnd(err, next) && isLeader && !started && next == from {
			return err
		}
		if classifyReadAt(ctx, err, next) != retry {
			return err
		}
		c.logger.Debug("tail broke, resuming elsewhere", "addr", addr, "next", next, "err", err)
		avoid = addr
		c.afterFailure(ctx, addr, gen, err)
		if fails >= c.cfg.Retries || !c.sleep(ctx, fails) {
			return c.giveUp(ctx, err)
		}
		fails++
	}
}

// callbackError carries fn's error out of tailOnce untouched.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// tailOnce streams from one server until the stream fails. It advances
// *next past every record fn accepted and reports whether it did.
func (c *Client) tailOnce(ctx context.Context, addr string, from uint64, fn func(*logv1.Record) error, next *uint64) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.client(addr).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: from, MaxBatch: 1024})
	if err != nil {
		return false, err
	}
	defer stream.Close()
	deliver := func(r *logv1.Record) error {
		switch off := r.GetOffset(); {
		case off < *next:
			return nil // already delivered; a correct server never resends
		case off > *next:
			return fmt.Errorf("%w: %s sent offset %d, expected %d", ErrSequence, addr, off, *next)
		}
		if err := fn(r); err != nil {
			return &callbackError{err}
		}
		*next++
		progressed = true
		return nil
	}
	for stream.Receive() {
		msg := stream.Msg()
		if r := msg.GetRecord(); r != nil {
			if err := deliver(r); err != nil {
				return progressed, err
			}
		}
		for _, r := range msg.GetRecords() {
			if err := deliver(r); err != nil {
				return progressed, err
			}
		}
	}
	if err := stream.Err(); err != nil {
		return progressed, err
	}
	// A tail never ends on its own; a clean end is a server going away.
	return progressed, connect.NewError(connect.CodeUnavailable, errors.New("the server ended the stream"))
}
