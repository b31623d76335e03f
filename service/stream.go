package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

const (
	// maxStreamBatch caps the records of one ConsumeStream read (and
	// response, for clients that ask for batches).
	maxStreamBatch = 1024
	// streamBatchBytes caps the values of one ConsumeStream read; a larger
	// single record still goes, alone.
	streamBatchBytes = 1 << 20

	// produceWindow caps the ProduceStream requests received but not yet
	// acknowledged; produceWindowBytes caps their values. Past either, the
	// stream stops reading and HTTP/2 flow control pushes back on the
	// client.
	produceWindow      = 128
	produceWindowBytes = 16 << 20
	// produceGroupBytes caps the cost of the pending requests grouped into
	// one AppendBatch (one durable write); maxBatchRecords caps its records.
	produceGroupBytes = 4 << 20

	// recordCost is what a record costs in memory beyond its value while
	// it waits in a window or a write (the log's frame, a slice header),
	// so that empty records count too.
	recordCost = 64
)

// flushGate lets a stream put several responses in one flush. Connect
// flushes after every message, which for one small record per response
// costs an HTTP/2 DATA frame and a wakeup of the connection's writer per
// record; held, the flushes wait for release, and the server's 4 KiB write
// buffer still sends full frames as it fills. Only the handler's goroutine
// (where Connect sends from) touches it.
type flushGate struct {
	http.ResponseWriter
	held, pending bool
}

func (g *flushGate) Flush() {
	if g.held {
		g.pending = true
		return
	}
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (g *flushGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *flushGate) hold() { g.held = true }

// release ends holding and makes the flushes held back.
func (g *flushGate) release() error {
	g.held = false
	if !g.pending {
		return nil
	}
	g.pending = false
	return http.NewResponseController(g.ResponseWriter).Flush()
}

// sender writes stream responses under a write deadline, so a client that
// stops reading is cut off after the slow-consumer timeout instead of
// holding the stream, and the batch in hand, forever.
type sender struct {
	s        *Service
	ctrl     requestControls
	deadline bool // a write deadline is set
}

func (w *sender) send(ctx context.Context, procedure string, send func() error) error {
	start := time.Now()
	if w.ctrl.rc != nil {
		if err := w.ctrl.rc.SetWriteDeadline(start.Add(w.s.slowTimeout)); err == nil {
			w.deadline = true
		}
	}
	err := send()
	if err == nil {
		return nil
	}
	if w.deadline && w.timedOut(ctx, err, time.Since(start)) {
		subject, _ := Subject(ctx)
		w.s.metrics.slowConsumers.WithLabelValues(procedure).Inc()
		w.s.logger.WarnContext(ctx, "ending slow consumer", slog.String("procedure", procedure),
			slog.String("subject", subject), slog.Duration("timeout", w.s.slowTimeout))
		return connect.NewError(connect.CodeResourceExhausted, errSlowConsumer)
	}
	return err
}

// sendEach runs send, which sends several responses, under one write
// deadline and, when the request has a flush gate, with one flush at the
// end instead of one per response.
func (w *sender) sendEach(ctx context.Context, procedure string, send func() error) error {
	gate := w.ctrl.gate
	if gate == nil {
		return w.send(ctx, procedure, send)
	}
	return w.send(ctx, procedure, func() error {
		gate.hold()
		err := send()
		if rerr := gate.release(); err == nil {
			err = rerr
		}
		return err
	})
}

// timedOut tells whether a failed send is the write deadline's doing. The
// deadline resets the HTTP/2 stream, which also cancels ctx, so the cause
// tells it apart from a shutdown and from the client's own deadline. The
// send that blocked may even succeed (a flush's error is lost) and the next
// one fail at once with os.ErrDeadlineExceeded, hence the error check
// beside the elapsed time.
func (w *sender) timedOut(ctx context.Context, err error, elapsed time.Duration) bool {
	cause := context.Cause(ctx)
	if errors.Is(cause, ErrShuttingDown) || errors.Is(cause, context.DeadlineExceeded) {
		return false
	}
	return elapsed >= w.s.slowTimeout || errors.Is(err, os.ErrDeadlineExceeded)
}

// idle clears the write deadline before the stream waits for new records,
// so an idle tail is not mistaken for a slow one.
func (w *sender) idle() {
	if w.deadline {
		_ = w.ctrl.rc.SetWriteDeadline(time.Time{})
		w.deadline = false
	}
}

// ConsumeStream sends a partition's records from the requested offset on,
// then follows the log until the client goes away or the server shuts
// down. A partition this node does not host is streamed from a node that
// does (proxyConsumeStream).
func (s *Service) ConsumeStream(ctx context.Context, req *logv1.ConsumeStreamRequest, stream *connect.ServerStream[logv1.ConsumeStreamResponse]) error {
	name := topicName(req.GetTopic())
	if err := s.authorize(ctx, name, ActionConsume); err != nil {
		return err
	}
	var t time.Time
	if req.GetFromTime() != nil {
		if req.GetOffset() != 0 || req.GetFromEnd() {
			return invalidArgument("set from_time, or offset and from_end, not both")
		}
		var err error
		if t, err = fromTime(req.GetFromTime()); err != nil {
			return err
		}
	}
	log, nhe, err := s.readTarget(ctx, name, req.GetPartition())
	if err != nil {
		return err
	}
	if nhe != nil {
		return s.proxyConsumeStream(ctx, nhe, req, stream)
	}

	reading(ctx, name, req.GetPartition())
	lowest, next := log.Bounds()
	off := req.GetOffset()
	if req.GetFromTime() != nil {
		if off, err = log.OffsetForTime(ctx, t); err != nil {
			return toConnect(ctx, err)
		}
	} else if req.GetFromEnd() {
		off = next - min(off, next-lowest)
	} else if off > next {
		return toConnect(ctx, &logstore.RangeError{Offset: off, Lowest: lowest, Next: next})
	}
	batched := req.GetMaxBatch() > 1
	n := maxStreamBatch
	if batched {
		n = int(min(req.GetMaxBatch(), maxStreamBatch))
	}

	s.metrics.tails.Inc()
	defer s.metrics.tails.Dec()

	w := &sender{s: s, ctrl: controls(ctx)}
	const procedure = logv1connect.LogServiceConsumeStreamProcedure
	var batch logstore.Batch // reused: Send marshals before it returns
	r := newResponder(stream, batched)
	sent := false // anything, even just the headers, went to the client
	for {
		if _, next := log.Bounds(); off >= next {
			if !sent {
				// Send the headers now: the client's call returns once
				// they arrive, and it would otherwise wait for a record.
				if err := w.send(ctx, procedure, func() error { return stream.Send(nil) }); err != nil {
					return toConnect(ctx, err)
				}
				sent = true
			}
			w.idle()
			start := time.Now()
			err := log.Wait(ctx, off)
			waited(ctx, off, start, err)
			if err != nil {
				return toConnect(ctx, err)
			}
		}
		err := log.ReadInto(ctx, off, n, streamBatchBytes, &batch)
		recs := batch.Records
		if err != nil {
			var re *logstore.RangeError
			if errors.As(err, &re) && re.Offset >= re.Next {
				continue // raced with a truncation of the tail: wait again
			}
			return toConnect(ctx, err)
		}
		if len(recs) == 0 {
			// The log promises at least one record below next; looping
			// here would spin.
			return toConnect(ctx, fmt.Errorf("service: log returned no record at offset %d below its end", off))
		}
		if batched {
			err = w.send(ctx, procedure, func() error { return r.send(recs) })
		} else {
			err = w.sendEach(ctx, procedure, func() error {
				for i := range recs {
					if err := r.send(recs[i : i+1]); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return toConnect(ctx, err)
		}
		sent = true
		off = recs[len(recs)-1].Offset + 1
	}
}

// responder sends a consumer's responses: under the binary codec encoded
// straight from the store's records (consumeWire), under JSON as the
// generated messages, whose records it reuses (Send marshals before it
// returns).
type responder struct {
	stream  *connect.ServerStream[logv1.ConsumeStreamResponse]
	batched bool // records go in the response's records, else in record
	encoded bool
	wire    consumeWire
	pb      []*logv1.Record
	resp    logv1.ConsumeStreamResponse
}

func newResponder(stream *connect.ServerStream[logv1.ConsumeStreamResponse], batched bool) *responder {
	r := &responder{stream: stream, batched: batched,
		encoded: binaryCodec(stream.Conn().RequestHeader().Get("Content-Type"))}
	r.wire.field = 1
	if batched {
		r.wire.field = 2
	}
	return r
}

// send sends one response holding recs (one record unless batched).
func (r *responder) send(recs []logstore.Record) error {
	if r.encoded {
		r.wire.recs = recs
		return r.stream.Conn().Send(&r.wire)
	}
	for len(r.pb) < len(recs) {
		r.pb = append(r.pb, &logv1.Record{})
	}
	for i := range recs {
		toProto(&recs[i], r.pb[i])
	}
	if r.batched {
		r.resp.Record, r.resp.Records = nil, r.pb[:len(recs)]
	} else {
		r.resp.Record, r.resp.Records = r.pb[0], nil
	}
	return r.stream.Send(&r.resp)
}

// proxyConsumeStream streams a partition this node does not host from a
// node that does: it opens the same ConsumeStream there (the partition
// named) and relays its responses until either side ends: the peer's end,
// error or not, becomes this stream's; the client's leaving, or a
// shutdown, cancels the peer's stream.
func (s *Service) proxyConsumeStream(ctx context.Context, nhe *NotHostedError, req *logv1.ConsumeStreamRequest, stream *connect.ServerStream[logv1.ConsumeStreamResponse]) error {
	peers, err := s.readPeers(ctx, nhe)
	if err != nil {
		return err
	}
	fwd := &logv1.ConsumeStreamRequest{
		Offset: req.GetOffset(), FromEnd: req.GetFromEnd(), MaxBatch: req.GetMaxBatch(), FromTime: req.GetFromTime(),
		Topic: nhe.Topic, Partition: uint32(nhe.Partition),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the peer's stream, whoever stopped first
	upstream, err := peers[0].ConsumeStream(ctx, fwd)
	if err != nil {
		return peerFailed(ctx, nhe.Topic, nhe.Partition, err)
	}
	defer upstream.Close()

	s.metrics.tails.Inc()
	defer s.metrics.tails.Dec()

	w := &sender{s: s, ctrl: controls(ctx)}
	const procedure = logv1connect.LogServiceConsumeStreamProcedure
	// The peer sends its headers as soon as it has nothing to send;
	// pass them on, so the client's call returns as it would here.
	upstream.ResponseHeader()
	if err := w.send(ctx, procedure, func() error { return stream.Send(nil) }); err != nil {
		return toConnect(ctx, err)
	}
	for {
		w.idle() // the peer may have nothing to send for a long time
		if !upstream.Receive() {
			break
		}
		msg := upstream.Msg()
		if err := w.send(ctx, procedure, func() error { return stream.Send(msg) }); err != nil {
			return toConnect(ctx, err)
		}
	}
	if err := upstream.Err(); err != nil {
		return peerFailed(ctx, nhe.Topic, nhe.Partition, err)
	}
	return nil
}

// pendingProduce is one received ProduceStream request on its way to the log.
type pendingProduce struct {
	recs  []logstore.Record
	bytes int           // key, header and value bytes
	topic string        // normalized
	part  int           // the partition chosen
	to    target        // where the records go
	arena *produceArena // what the request was decoded into, if pooled
}

// produceArena is the storage one ProduceStream request is received and
// decoded into: its bytes, its records as the log takes them, and the
// request message for the rare request decodeProduce leaves to protobuf
// (vtprotobuf's ResetVT keeps its record and header messages). The
// appender hands it back once the request's records are written (copied
// into a Raft entry or the store's frames) or refused, so a stream's
// requests allocate nothing of their own. Without it a keyed record cost
// ~700 bytes of garbage on its way in, and under the memory limit the
// collector's pace follows the bytes.
type produceArena struct {
	raw  protocodec.Raw
	req  logv1.ProduceStreamRequest
	recs []logstore.Record
	slab []logstore.Header
}

var produceArenas = sync.Pool{New: func() any { return new(produceArena) }}

// maxArenaBytes bounds the request an arena is kept for: one that carried
// a larger one (up to the message limit) goes to the collector instead.
const maxArenaBytes = 1 << 20

// release hands a back for the next request; nothing may use what was
// decoded into it afterwards. A nil arena is ignored.
func (a *produceArena) release() {
	if a == nil || cap(a.raw.Data) > maxArenaBytes || cap(a.recs) > maxStreamBatch*4 {
		return
	}
	// Past their lengths they are already clear: each request appends to
	// them from empty, and what it wrote is cleared here.
	clear(a.recs)
	clear(a.slab)
	a.recs, a.slab = a.recs[:0], a.slab[:0]
	produceArenas.Put(a)
}

// receiveProduce reads the stream's next request. Under the binary codec
// it is decoded into a pooled arena (returned with it), by decodeProduce
// or, for what that leaves to protobuf, protocodec; under JSON connect
// decodes it as usual.
func receiveProduce(stream *connect.BidiStream[logv1.ProduceStreamRequest, logv1.ProduceStreamResponse], pooled bool) (produceRequest, *produceArena, error) {
	if !pooled {
		req, err := stream.Receive()
		if err != nil {
			return produceRequest{}, nil, err
		}
		return fromProto(req, nil, new([]logstore.Header)), nil, nil
	}
	a := produceArenas.Get().(*produceArena)
	if err := a.raw.Receive(stream.Conn().Receive); err != nil {
		a.release()
		return produceRequest{}, nil, err
	}
	req, ok := decodeProduce(a.raw.Data, a.recs, &a.slab)
	if !ok {
		// What decodeProduce wrote before it gave up, so that the storage
		// past what fromProto writes is clear (release).
		clear(req.recs)
		clear(a.slab)
		a.slab = a.slab[:0]
		// Not to vtprotobuf's pool, where ResetVT would put it: its bytes
		// point into a.raw, which the next request overwrites.
		a.req.Record = nil
		if err := protocodec.DecodeInto(a.raw.Data, &a.req); err != nil {
			a.release()
			return produceRequest{}, nil, protocodec.DecodeError(err)
		}
		req = fromProto(&a.req, a.recs, &a.slab)
	}
	a.recs = req.recs // kept, grown, for the arena's next request
	return req, a, nil
}

// binaryCodec reports whether a request of this Content-Type is decoded by
// protocodec: gRPC and gRPC-Web name their codec after a "+" (none means
// proto), the Connect protocol's streams always do.
func binaryCodec(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	_, codec, found := strings.Cut(strings.TrimSpace(mt), "+")
	return !found || codec == protocodec.Name
}

// sameTarget reports whether q may share p's write: both go to the same
// local partition.
func (p *pendingProduce) sameTarget(q *pendingProduce) bool {
	return p.to.log != nil && q.to.log != nil && p.topic == q.topic && p.part == q.part
}

// cost is what the request holds in memory until it is acknowledged.
func (p pendingProduce) cost() int { return p.bytes + recordCost*len(p.recs) }

// produceAck is the acknowledgement of one request, sent in request order.
type produceAck struct {
	offset    uint64
	count     uint32
	partition uint32
	cost      int // the request's cost, returned to the window
	// forwarded, for a request a forwarder sends, is queued before the
	// leader answers: the acker waits for it, and takes offset from it.
	forwarded *forwardResult
}

// forwardResult is a forwarded request's outcome: ready is closed once
// offset or err (the forward failed; the stream fails with it) is set.
type forwardResult struct {
	ready  chan struct{}
	offset uint64
	err    error
}

// ProduceStream appends each request's records and acknowledges requests
// in order. Three stages run at once: this goroutine receives and checks
// requests; an appender groups whatever requests are pending into one
// AppendBatch (one durable write); an acker sends the acknowledgements.
// A request is acknowledged only after the write holding it is durable.
// The window between receiving and acknowledging is bounded in requests and
// bytes. On shutdown the stream stops reading, acknowledges what it has
// received, and ends with Unavailable.
func (s *Service) ProduceStream(ctx context.Context, stream *connect.BidiStream[logv1.ProduceStreamRequest, logv1.ProduceStreamResponse]) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		failOnce sync.Once
		failure  error // set once by fail, read after the stages stop
	)
	fail := func(err error) {
		failOnce.Do(func() { failure = err })
		cancel(err)
	}
	ctrl := controls(ctx)
	if ctrl.closeBody != nil {
		// Unblock a Receive waiting on an idle client when the stream
		// fails or the server shuts down.
		stop := context.AfterFunc(ctx, func() { _ = ctrl.closeBody() })
		defer stop()
	}

	reqs := make(chan pendingProduce, produceWindow)
	acks := make(chan produceAck, produceWindow)
	var inflight atomic.Int64          // cost of the requests received and not yet acknowledged
	released := make(chan struct{}, 1) // the acker freed window bytes

	var wg sync.WaitGroup
	wg.Go(func() { s.appendPending(ctx, reqs, acks, fail) })
	wg.Go(func() {
		const procedure = logv1connect.LogServiceProduceStreamProcedure
		w := &sender{s: s, ctrl: ctrl}
		gate := ctrl.gate
		if gate != nil {
			defer func() { _ = gate.release() }()
		}
		var resp logv1.ProduceStreamResponse // reused: Send marshals before it returns
		sending := true
		for a := range acks {
			if f := a.forwarded; f != nil {
				<-f.ready
				a.offset = f.offset
				if f.err != nil {
					sending = false // the forwarder failed the stream
				}
			}
			if sending {
				if gate != nil {
					// Acks queued together go out in one flush.
					gate.hold()
				}
				resp.Offset, resp.Count, resp.Partition = a.offset, a.count, a.partition
				err := w.send(ctx, procedure, func() error { return stream.Send(&resp) })
				if err == nil && len(acks) == 0 {
					if gate != nil {
						err = w.send(ctx, procedure, gate.release)
					}
					// Nothing more to send: the deadline must not fire on
					// a producer that is merely pausing.
					w.idle()
				}
				if err != nil {
					fail(err)
					sending = false // keep draining so the appender never blocks
				}
			}
			inflight.Add(-int64(a.cost))
			select {
			case released <- struct{}{}:
			default:
			}
		}
	})

	checker := &produceChecker{s: s, ctx: ctx, allowed: map[string]topicDecision{}}
	pooled := binaryCodec(stream.RequestHeader().Get("Content-Type"))
	recvErr := func() error {
		for {
			req, arena, err := receiveProduce(stream, pooled)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				if ctx.Err() != nil {
					return nil // failed elsewhere or shutting down: reported below
				}
				return err
			}
			p, err := checker.pending(&req, arena)
			if err != nil {
				arena.release()
				return err
			}
			for inflight.Load() > produceWindowBytes {
				select {
				case <-released:
				case <-ctx.Done():
					arena.release()
					return nil
				}
			}
			inflight.Add(int64(p.cost()))
			select {
			case reqs <- p:
			case <-ctx.Done():
				arena.release()
				return nil
			}
		}
	}()
	close(reqs)
	wg.Wait()

	// Every request received before the failure has been acknowledged,
	// unless the appender or the acker failed (failure); the outcome is
	// that of the requests sent and not acknowledged.
	switch {
	case failure != nil:
		return appendFailed(ctx, failure)
	case recvErr != nil:
		// The request that failed to arrive, or its checks, was not
		// appended.
		return withAppendOutcome(toConnect(ctx, recvErr), logv1.AppendOutcome_OUTCOME_NOT_APPLIED)
	case errors.Is(context.Cause(ctx), ErrShuttingDown):
		// Nothing was received after the shutdown began.
		return withAppendOutcome(toConnect(ctx, ErrShuttingDown), logv1.AppendOutcome_OUTCOME_NOT_APPLIED)
	case ctx.Err() != nil:
		return appendFailed(ctx, ctx.Err())
	}
	return nil
}

// produceChecker checks a ProduceStream's requests, remembering for the
// stream's life the ACL's decision on each topic it names.
type produceChecker struct {
	s       *Service
	ctx     context.Context
	allowed map[string]topicDecision // by topic name
}

// topicDecision is authorize's answer for a topic, and the topic's name as
// the stream's requests use it: a copy, since the name a pooled request
// decodes points into bytes the next request overwrites, and the name
// outlives its request (forwarders, this map, errors formatted later).
type topicDecision struct {
	name string
	err  error
}

// maxStreamTopics bounds the decisions a stream remembers.
const maxStreamTopics = 1024

// pending checks one ProduceStream request and routes it to its partition.
func (c *produceChecker) pending(req *produceRequest, arena *produceArena) (pendingProduce, error) {
	s, ctx := c.s, c.ctx
	d, ok := c.allowed[topicName(req.topic)]
	if !ok {
		if len(c.allowed) >= maxStreamTopics {
			clear(c.allowed)
		}
		name := strings.Clone(topicName(req.topic))
		d = topicDecision{name: name, err: s.authorize(ctx, name, ActionProduce)}
		c.allowed[name] = d
	}
	if d.err != nil {
		return pendingProduce{}, d.err
	}
	name := d.name
	t, err := s.topic(ctx, name)
	if err != nil {
		return pendingProduce{}, err
	}
	p := pendingProduce{topic: name, arena: arena, recs: req.recs}
	if len(p.recs) == 0 {
		return pendingProduce{}, invalidArgument("empty request: set record or records")
	}
	if p.bytes, err = checkRecords(p.recs, req.single, s.recordLimit(t)); err != nil {
		return pendingProduce{}, err
	}
	if p.part, err = s.choosePartition(t, req.partition(), p.recs); err != nil {
		return pendingProduce{}, err
	}
	if p.to, err = s.produceTarget(ctx, name, p.part); err != nil {
		return pendingProduce{}, err
	}
	return p, nil
}

// appendPending is ProduceStream's appender: it writes the pending
// requests to one local partition (up to produceGroupBytes of cost and
// maxBatchRecords records) in one AppendBatch, hands a request for a
// partition another node leads to that partition's forwarder, and queues
// their acknowledgements in request order. After a failure it discards
// what is left; it closes acks when reqs is closed and the forwarders are
// done.
func (s *Service) appendPending(ctx context.Context, reqs <-chan pendingProduce, acks chan<- produceAck, fail func(error)) {
	fwds := map[partitionKey]*forwarder{}
	defer func() {
		for _, f := range fwds {
			close(f.in)
		}
		for _, f := range fwds {
			<-f.done
		}
		close(acks)
	}()
	// drain waits until the partition's forwarder has sent everything
	// handed to it: the partition's records stay in request order.
	drain := func(topic string, part int) {
		if f := fwds[partitionKey{topic, part}]; f != nil {
			f.pending.Wait()
		}
	}
	var (
		group  []pendingProduce
		values []logstore.Record
		queue  = gatherer[pendingProduce]{in: reqs}
	)
	for {
		p, ok := queue.next()
		if !ok {
			return
		}
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrShuttingDown) {
			p.arena.release()
			continue // the stream failed: nothing more is appended
		}
		if p.to.peer != nil {
			// A partition another node leads: its forwarder sends it,
			// with the requests for it queued behind, while this goroutine
			// goes on with the next.
			key := partitionKey{p.topic, p.part}
			f := fwds[key]
			if f == nil {
				f = newForwarder(ctx, key, fail)
				fwds[key] = f
			}
			res := &forwardResult{ready: make(chan struct{})}
			f.pending.Add(1)
			f.in <- forwardReq{p: p, res: res}
			acks <- produceAck{count: uint32(len(p.recs)), partition: uint32(p.part), cost: p.cost(), forwarded: res}
			continue
		}
		drain(p.topic, p.part)
		group, values = append(group[:0], p), append(values[:0], p.recs...)
		size, cost := p.bytes, p.cost()
		for cost < produceGroupBytes {
			q, ok := queue.more(func(q pendingProduce) bool {
				return len(values)+len(q.recs) <= maxBatchRecords && p.sameTarget(&q)
			})
			if !ok {
				break
			}
			group, values = append(group, q), append(values, q.recs...)
			size, cost = size+q.bytes, cost+q.cost()
		}
		// Not cancelled with the stream: a started write completes, and
		// on shutdown in-flight requests are still acknowledged. (A
		// forwarded write is cancelled with it: the leader decides.)
		base, err := p.to.log.AppendRecords(context.WithoutCancel(ctx), values)
		switch leader, forward := s.leaderFor(ctx, err); {
		case err == nil:
			s.metrics.appended(len(values), size)
			for _, g := range group {
				acks <- produceAck{offset: base, count: uint32(len(g.recs)), partition: uint32(p.part), cost: g.cost()}
				base += uint64(len(g.recs))
			}
		case forward:
			// One request at a time: each fits the leader's message
			// limit, and the leader's offsets need not be contiguous.
			for _, g := range group {
				base, err := forwardBatch(ctx, leader, g.topic, g.part, appendProto(nil, g.recs))
				if err != nil {
					fail(err)
					break
				}
				acks <- produceAck{offset: base, count: uint32(len(g.recs)), partition: uint32(g.part), cost: g.cost()}
			}
		default:
			fail(err)
		}
		clear(values) // drop references to request buffers
		for i := range group {
			group[i].arena.release() // written or refused: the records were copied
			group[i] = pendingProduce{}
		}
	}
}

// partitionKey names a partition.
type partitionKey struct {
	topic string
	part  int
}

// forwardReq is a request for a partition another node leads, with where
// its outcome goes (its acknowledgement, queued, waits for it).
type forwardReq struct {
	p   pendingProduce
	res *forwardResult
}

// maxForwardBytes bounds the cost of the requests one forward carries.
const maxForwardBytes = 1 << 20

// forwarder sends one stream's requests for one partition that another
// node leads, in order: the requests queued while a forward is on its way
// go together in the next (one ProduceBatch, one Raft entry on the
// leader), and the stream's other partitions do not wait for it. Before,
// a stream sent such a request alone and waited for the leader's answer
// before its next request, so a stream spread over partitions that other
// nodes lead ran one leader round trip at a time.
type forwarder struct {
	in      chan forwardReq
	pending sync.WaitGroup // requests handed in and not yet answered
	done    chan struct{}  // closed when run returns
}

func newForwarder(ctx context.Context, key partitionKey, fail func(error)) *forwarder {
	f := &forwarder{in: make(chan forwardReq, produceWindow), done: make(chan struct{})}
	go f.run(ctx, key, fail)
	return f
}

func (f *forwarder) run(ctx context.Context, key partitionKey, fail func(error)) {
	defer close(f.done)
	var (
		batch []forwardReq
		recs  []*logv1.Record
		queue = gatherer[forwardReq]{in: f.in}
	)
	for {
		r, ok := queue.next()
		if !ok {
			return
		}
		batch, recs = append(batch[:0], r), appendProto(recs[:0], r.p.recs)
		cost := r.p.cost()
		for cost < maxForwardBytes {
			q, ok := queue.more(func(q forwardReq) bool {
				return len(recs)+len(q.p.recs) <= maxBatchRecords && cost+q.p.cost() <= maxForwardBytes && q.p.to.peer == r.p.to.peer
			})
			if !ok {
				break
			}
			batch, recs = append(batch, q), appendProto(recs, q.p.recs)
			cost += q.p.cost()
		}
		var base uint64
		err := context.Cause(ctx)
		if err == nil || errors.Is(err, ErrShuttingDown) {
			// The stream goes on, or shuts down acknowledging what it
			// received; a forward is cancelled with it (the leader decides).
			base, err = forwardBatch(ctx, r.p.to.peer, key.topic, key.part, recs)
			if err != nil {
				fail(err)
			}
		}
		forgetRecords(recs) // drop references to request buffers
		for _, b := range batch {
			b.res.offset, b.res.err = base, err
			base += uint64(len(b.p.recs))
			b.p.arena.release()
			close(b.res.ready)
			f.pending.Done()
		}
	}
}

// gatherer hands out what arrives on in, in order, for a loop that
// gathers whatever is already waiting into one batch: an item that does
// not fit the batch is held back for the next.
type gatherer[T any] struct {
	in      <-chan T
	held    T
	holding bool
}

// next returns the item held back, or waits for one; false once in is
// closed and drained.
func (g *gatherer[T]) next() (T, bool) {
	if g.holding {
		t := g.held
		var zero T
		g.held, g.holding = zero, false
		return t, true
	}
	t, ok := <-g.in
	return t, ok
}

// more returns an item already waiting that fits says the batch takes;
// one it does not take is held back. false: nothing waiting (or in is
// closed), or the item was held back.
func (g *gatherer[T]) more(fits func(T) bool) (T, bool) {
	var zero T
	select {
	case t, ok := <-g.in:
		switch {
		case !ok:
			return zero, false
		case !fits(t):
			g.held, g.holding = t, true
			return zero, false
		}
		return t, true
	default:
		return zero, false
	}
}
