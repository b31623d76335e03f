package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// DefaultMaxBatch is how many records a tail asks for in one stream message
// unless MaxBatch says otherwise.
const DefaultMaxBatch = 1024

// TailOption configures Tail and TailBatches.
type TailOption interface{ applyTail(*tailConfig) }

type tailConfig struct {
	maxBatch uint32
	end      uint64 // with bounded: stop before this offset
	bounded  bool
	from     time.Time // with byTime: start at the first record at or after it
	byTime   bool
	onResume func(Resume)
	target   target // Topic and Partition
	reuse    bool   // ReuseRecords
}

type tailOptionFunc func(*tailConfig)

func (f tailOptionFunc) applyTail(c *tailConfig) { f(c) }

// MaxBatch caps the records of one stream message (ConsumeStream's
// max_batch), so of one call of a TailBatches callback; 0 lets the server
// choose. The default is DefaultMaxBatch.
func MaxBatch(n uint32) TailOption {
	return tailOptionFunc(func(c *tailConfig) { c.maxBatch = n })
}

// Until makes a tail read a range rather than follow the log: it returns
// nil once it has delivered every record below offset end. A tail that
// starts at or past end returns nil at once.
func Until(end uint64) TailOption {
	return tailOptionFunc(func(c *tailConfig) { c.end, c.bounded = end, true })
}

// FromTime starts a tail at the first record whose time is at or after t
// instead of at an offset, which must then be 0. When there is no such
// record yet, the tail starts at the end of the log and delivers the
// records appended from then on. The leader says where that is
// (OffsetForTime: a follower may lag, and would start too early or too
// late); the records are then read like any tail's.
func FromTime(t time.Time) TailOption {
	return tailOptionFunc(func(c *tailConfig) { c.from, c.byTime = t, true })
}

// ReuseRecords lets a tail decode each stream message into the memory of
// the one before: the records a TailBatches callback gets (or a Tail
// callback, one by one) are valid only until it returns, and fn must copy
// (proto.Clone) what it keeps. For consumers that are done with each
// batch when their callback returns: a tail then allocates nothing per
// record, where it otherwise makes about 570 KB per thousand keyed records
// (their messages and the copy of the bytes they point into) for the
// collector to take back.
func ReuseRecords() TailOption {
	return tailOptionFunc(func(c *tailConfig) { c.reuse = true })
}

// OnResume calls fn each time a tail's stream broke and the tail is about
// to resume it, before it waits: to report "reconnecting from offset N".
func OnResume(fn func(Resume)) TailOption {
	return tailOptionFunc(func(c *tailConfig) { c.onResume = fn })
}

// Resume describes a tail about to resume after its stream broke.
type Resume struct {
	Addr string        // the server whose stream broke
	Err  error         // how it broke
	Next uint64        // the offset the tail resumes from
	Wait time.Duration // the backoff before it resumes
}

// Tail calls fn with every record from offset from on, in order, following
// the log live until ctx ends, fn returns an error (returned as it is), a
// failure that cannot be retried, or with Until, the end of the range. It
// reads a ConsumeStream from a follower and, when the stream breaks,
// resumes on another server from the record after the last one fn
// received: no gaps, no duplicates. Retries (with backoff) are counted per
// break without progress, so a long tail survives any number of failovers.
// Topic and Partition say which partition it reads (default: partition 0
// of the topic "default").
func (c *Client) Tail(ctx context.Context, from uint64, fn func(*logv1.Record) error, opts ...TailOption) error {
	return c.TailBatches(ctx, from, func(records []*logv1.Record) error {
		for _, r := range records {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// TailBatches is Tail calling fn once per stream message, with its records
// (at most MaxBatch, at least one), in order: to flush output or measure
// per message. fn may keep the slice. A message's records point into one
// copy of it and are made from one allocation per message: a record kept
// keeps its message's bytes and records in memory (clone with proto.Clone
// what is kept long, one of many).
func (c *Client) TailBatches(ctx context.Context, from uint64, fn func([]*logv1.Record) error, opts ...TailOption) error {
	if c.closed.Load() {
		return ErrClosed
	}
	cfg := tailConfig{maxBatch: DefaultMaxBatch}
	for _, o := range opts {
		o.applyTail(&cfg)
	}
	if cfg.target.err != nil {
		return cfg.target.err
	}
	if cfg.byTime && from != 0 {
		return fmt.Errorf("client: a tail starts at an offset (%d) or at a time, not both", from)
	}
	// The tail ends when the client closes, too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	if cfg.byTime {
		off, _, err := c.OffsetForTime(ctx, cfg.from, TopicOption{func(t *target) { *t = cfg.target }})
		if err != nil {
			if c.closed.Load() {
				return ErrClosed
			}
			return err
		}
		from = off
	}
	t := &tail{c: c, cfg: cfg, fn: fn, next: from}
	if t.done() {
		return nil
	}
	avoid := ""
	fails := 0
	for {
		addr, isLeader, gen := c.readTarget(avoid)
		progressed, err := t.once(ctx, addr)
		if progressed {
			fails = 0
		}
		var fnErr *callbackError
		switch {
		case errors.Is(err, errTailDone):
			return nil
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.Is(err, ErrSequence):
			return err
		case c.closed.Load():
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		err = fmt.Errorf("client: ConsumeStream from %d on %s: %w", t.next, addr, err)
		// "Past the end" from the leader before anything was delivered means
		// the caller asked beyond the log; later, or from a follower, the
		// server lags the ones that served us.
		if pastEnd(err, t.next) && isLeader && !t.delivered {
			return err
		}
		if classifyReadAt(ctx, err, t.next) != retry {
			return err
		}
		c.logger.Debug("tail broke, resuming elsewhere", "addr", addr, "next", t.next, "err", err)
		avoid = addr
		c.afterFailure(ctx, addr, gen, err)
		if fails >= c.cfg.Retries {
			return c.giveUp(ctx, err)
		}
		d := c.backoff(fails)
		if cfg.onResume != nil {
			cfg.onResume(Resume{Addr: addr, Err: err, Next: t.next, Wait: d})
		}
		if !c.wait(ctx, d) {
			return c.giveUp(ctx, err)
		}
		fails++
	}
}

// errTailDone ends a tail that delivered its range.
var errTailDone = errors.New("client: the tail reached its end")

// callbackError carries fn's error out of tail.once untouched.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// tail is the state of one Tail across its streams.
type tail struct {
	c         *Client
	cfg       tailConfig
	fn        func([]*logv1.Record) error
	next      uint64 // the offset of the next record to deliver
	delivered bool   // fn has had a record
}

func (t *tail) done() bool { return t.cfg.bounded && t.next >= t.cfg.end }

// once streams from one server until the stream fails, the range ends or
// fn fails. It reports whether fn got any record.
func (t *tail) once(ctx context.Context, addr string) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &logv1.ConsumeStreamRequest{Offset: t.next, MaxBatch: t.cfg.maxBatch,
		Topic: t.cfg.target.topic, Partition: uint32(t.cfg.target.partition)}
	stream, err := t.c.client(addr).ConsumeStream(ctx, req)
	if err != nil {
		return false, err
	}
	defer stream.Close()
	receive := t.receiver(stream)
	for {
		msg, err := receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return progressed, err
		}
		records := msg.GetRecords()
		if r := msg.GetRecord(); r != nil {
			records = append([]*logv1.Record{r}, records...)
		}
		batch, err := t.accept(addr, records)
		if err != nil {
			return progressed, err
		}
		if len(batch) > 0 {
			if err := t.fn(batch); err != nil {
				return progressed, &callbackError{err}
			}
			t.next = batch[len(batch)-1].GetOffset() + 1
			t.delivered, progressed = true, true
		}
		if t.done() {
			return progressed, errTailDone
		}
	}
	// A tail never ends on its own; a clean end is a server going away.
	return progressed, connect.NewError(connect.CodeUnavailable, errors.New("the server ended the stream"))
}

// receiver returns the function that reads stream's next message, io.EOF
// at its clean end. With ReuseRecords a message's bytes go into one buffer
// and it is decoded into one protocodec.Decoder, both reused, so each
// message overwrites the one before.
func (t *tail) receiver(stream *connect.ServerStreamForClient[logv1.ConsumeStreamResponse]) func() (*logv1.ConsumeStreamResponse, error) {
	if !t.cfg.reuse {
		return func() (*logv1.ConsumeStreamResponse, error) {
			if stream.Receive() {
				return stream.Msg(), nil
			}
			if err := stream.Err(); err != nil {
				return nil, err
			}
			return nil, io.EOF
		}
	}
	var (
		raw protocodec.Raw
		dec protocodec.Decoder
	)
	return func() (*logv1.ConsumeStreamResponse, error) {
		conn, err := stream.Conn()
		if err != nil {
			return nil, err
		}
		if err := raw.Receive(conn.Receive); err != nil {
			return nil, err
		}
		msg, err := dec.Decode(raw.Data)
		if err != nil {
			return nil, protocodec.DecodeError(err)
		}
		return msg, nil
	}
}

// accept returns the records of one message that fn should get: in
// sequence, none delivered before, none at or past the end of the range.
func (t *tail) accept(addr string, records []*logv1.Record) ([]*logv1.Record, error) {
	out := make([]*logv1.Record, 0, len(records))
	next := t.next
	for _, r := range records {
		off := r.GetOffset()
		switch {
		case off < next:
			continue // already delivered; a correct server never resends
		case off > next:
			return nil, fmt.Errorf("%w: %s sent offset %d, expected %d", ErrSequence, addr, off, next)
		case t.cfg.bounded && off >= t.cfg.end:
			return out, nil
		}
		out = append(out, clipRecord(r))
		next++
	}
	return out, nil
}

// timestamp converts t for a request.
func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
