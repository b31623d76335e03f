package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// DefaultProducerWindow is how many requests a Producer keeps unacknowledged
// by default, the server's own pipeline depth.
const DefaultProducerWindow = 128

// Producer appends records over a ProduceStream to the leader, pipelined:
// Send returns once the request is on its way, and its Ack completes when the
// server acknowledges it (durably). Requests are acknowledged in order.
//
// A Producer does not retry. When its stream breaks, every request sent and
// not yet acknowledged fails: with the dial error itself when the stream never
// connected, or with the server's answer as it is when that says none of them
// was written (the AppendOutcome detail OUTCOME_NOT_APPLIED, or a refusal by
// authentication or the ACL); with ErrUnknownOutcome otherwise. The next Send opens a new stream to the leader
// as the client knows it then, unless the Producer is Ordered. Send and Close
// may be called from several goroutines.
//
// The Topic and Partition options given to NewProducer say where every
// Send goes. With Partition, the stream goes to that partition's leader as
// the client knows it (DescribeTopic, cached), not through the cluster's
// leader, so one Producer per partition writes to each partition directly,
// as a Kafka producer does. Without Partition, a Send whose records have keys is split by
// partition as ProduceSplit splits records: one request per partition
// their keys map to, naming it, and one for the records without a key, all
// on the one stream, in order; its Ack completes when all of them are
// acknowledged or failed, and Ack.Appended says where each record went.
type Producer struct {
	c       *Client
	ctx     context.Context // ends the streams: the Producer's ctx, or Client.Close
	cancel  context.CancelFunc
	stop    func() bool   // detaches ctx from the client's
	window  chan struct{} // one token per unacknowledged Send
	ordered bool          // see Ordered; set before the Producer is used
	target  target        // Topic and Partition; set before the Producer is used

	// sendMu serializes Send and Close, so requests go out in the order
	// their Acks join the pending queue. It is taken before mu.
	sendMu sync.Mutex
	// mu guards cur, closed, failed and every stream's pending and broken; it is
	// never held across network I/O, so receivers are never blocked by a
	// Send waiting on flow control.
	mu      sync.Mutex
	cur     *producerStream
	closed  bool
	failed  error          // an Ordered Producer's first failure
	streams sync.WaitGroup // the receivers
}

// ProducerOption configures NewProducer.
type ProducerOption interface{ applyProducer(*Producer) }

type producerOptionFunc func(*Producer)

func (f producerOptionFunc) applyProducer(p *Producer) { f(p) }

// Ordered makes a Producer stop at its first failure: once a stream broke
// with requests unacknowledged (or could not be opened), every later Send
// fails with that failure instead of opening a new stream. What reaches the
// log is then the requests before the failure, in order, and perhaps some
// of those whose Ack failed with ErrUnknownOutcome, never a request sent
// after them: what a producer of lines in order (proglog produce) needs.
func Ordered() ProducerOption {
	return producerOptionFunc(func(p *Producer) { p.ordered = true })
}

// producerStream is one ProduceStream and the requests awaiting its acks.
type producerStream struct {
	addr string
	gen  uint64
	// route is the partition whose leader addr is (a Producer with a
	// Partition option), routeGen which answer of the topic cache said so;
	// nil when the stream goes to the cluster's leader.
	route    *dest
	routeGen uint64
	stream   *connect.BidiStreamForClientSimple[logv1.ProduceStreamRequest, logv1.ProduceStreamResponse]
	cancel   context.CancelFunc
	pending  []*ackPart // guarded by Producer.mu; acks arrive in this order
	broken   bool       // guarded by Producer.mu; the receiver has failed pending
}

// Ack is the outcome of one Producer.Send: of its one request, or of the
// requests it was split into, one per partition.
type Ack struct {
	done  chan struct{}
	count int
	parts []*ackPart
	left  int    // parts not yet acknowledged or failed; guarded by Producer.mu
	base  uint64 // the first record's offset
	err   error  // the first failed part's
}

// ackPart is one request of a Send.
type ackPart struct {
	ack       *Ack
	idx       []int // the records of the Send it carries; nil: all of them
	count     int
	partition int // named, or as the server acknowledged it
	base      uint64
	err       error
}

// Done is closed once the outcome is known.
func (a *Ack) Done() <-chan struct{} { return a.done }

// Wait returns the offset of the request's first record (the others follow
// it) once the server acknowledged it, or the failure. For a Send split by
// partition, it returns the first record's offset in its partition, or
// the first failure; Appended says where each record went.
func (a *Ack) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-a.done:
		return a.base, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Appended returns where each record of the Send went, in the order sent,
// once Done is closed (nil before). When a Send was split by partition,
// some of its requests may have failed while others were appended.
func (a *Ack) Appended() []Appended {
	select {
	case <-a.done:
	default:
		return nil
	}
	out := make([]Appended, a.count)
	for _, p := range a.parts {
		for k := range p.count {
			j := k
			if p.idx != nil {
				j = p.idx[k]
			}
			if p.err != nil {
				out[j] = Appended{Partition: p.partition, Err: p.err}
			} else {
				out[j] = Appended{Partition: p.partition, Offset: p.base + uint64(k)}
			}
		}
	}
	return out
}

// NewProducer starts a Producer; its streams end when ctx ends, Close is
// called, or the Client closes. window caps the unacknowledged Sends
// (0 means DefaultProducerWindow). opts are Ordered, Topic and Partition.
func (c *Client) NewProducer(ctx context.Context, window int, opts ...ProducerOption) (*Producer, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if window <= 0 {
		window = DefaultProducerWindow
	}
	p := &Producer{c: c, window: make(chan struct{}, window)}
	for _, o := range opts {
		o.applyProducer(p)
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.stop = context.AfterFunc(c.ctx, p.cancel)
	return p, nil
}

// Send queues values as one request (one durable write on the server). It
// blocks while the window is full. An error from Send means the request was
// not sent; the Ack reports everything else.
func (p *Producer) Send(ctx context.Context, values ...[]byte) (*Ack, error) {
	if len(values) == 0 {
		return nil, errors.New("client: Send needs at least one value")
	}
	return p.send(ctx, valueRecords(values))
}

// SendRecords is Send for records with a key and headers as well as a
// value; their offset and time are set by the server. A record that fails
// ValidateRecord fails the call with ErrInvalidRecord, and nothing is sent.
func (p *Producer) SendRecords(ctx context.Context, records ...*logv1.Record) (*Ack, error) {
	if len(records) == 0 {
		return nil, fmt.Errorf("%w: Send needs at least one record", ErrInvalidRecord)
	}
	if err := validateRecords(records); err != nil {
		return nil, err
	}
	return p.send(ctx, records)
}

func (p *Producer) send(ctx context.Context, records []*logv1.Record) (_ *Ack, err error) {
	if p.target.err != nil {
		return nil, p.target.err
	}
	// The span (Config.TraceHeaders) covers queueing the records; the
	// stream's own span covers the appends.
	ctx, records, end := p.c.producing(ctx, p.target.topic, records)
	defer func() { end(err) }()
	n := 0
	if !p.target.partitionSet && hasKey(records) {
		n = p.c.partitionCount(ctx, p.target.topic)
	}
	parts := split(p.target, records, n)
	select {
	case p.window <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.ctx.Done():
		return nil, ErrClosed
	}
	ack := &Ack{done: make(chan struct{}), count: len(records), left: len(parts)}
	reqs := make([]*logv1.ProduceStreamRequest, len(parts))
	for i, pt := range parts {
		t := pt.target(p.target)
		req := &logv1.ProduceStreamRequest{Topic: t.topic, Partition: t.wirePartition()}
		if rs := pt.records(records); len(rs) == 1 {
			req.Record = rs[0]
		} else {
			req.Records = rs
		}
		reqs[i] = req
		ap := &ackPart{ack: ack, idx: pt.idx, count: len(records), partition: pt.partition}
		if pt.idx != nil {
			ap.count = len(pt.idx)
		}
		ack.parts = append(ack.parts, ap)
	}

	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	// A Producer of one partition opens its streams to that partition's
	// leader; the route is looked up (perhaps asked for) only when a stream
	// is to be opened, and before p.mu, which is never held across network
	// I/O. (sendMu keeps other Sends from opening one meanwhile; a stream
	// that breaks in between reopens through the cluster's leader.)
	var route *dest
	var direct string
	var routeGen uint64
	if p.target.partitionSet {
		p.mu.Lock()
		opening := p.cur == nil || p.cur.broken
		p.mu.Unlock()
		if opening {
			route = &dest{topic: p.target.topic, partition: p.target.partition}
			direct, routeGen = p.c.partitionLeader(ctx, route)
		}
	}
	p.mu.Lock()
	if p.closed || p.ctx.Err() != nil {
		p.mu.Unlock()
		<-p.window
		return nil, ErrClosed
	}
	if p.failed != nil {
		err := p.failed
		p.mu.Unlock()
		<-p.window
		return nil, fmt.Errorf("client: the producer stopped at its first failure: %w", err)
	}
	if p.cur == nil || p.cur.broken {
		s, err := p.open(direct, route, routeGen)
		if err != nil {
			err = fmt.Errorf("client: opening a ProduceStream: %w", err)
			if p.ordered {
				p.failed = err
			}
			p.mu.Unlock()
			<-p.window
			return nil, err
		}
		p.cur = s
	}
	s := p.cur
	s.pending = append(s.pending, ack.parts...)
	p.mu.Unlock()
	// A failed Send means the stream is over: the receiver gets the real
	// error from Receive and fails ack with every other pending request.
	for _, req := range reqs {
		if s.stream.Send(req) != nil {
			break
		}
	}
	return ack, nil
}

func hasKey(records []*logv1.Record) bool {
	for _, r := range records {
		if len(r.GetKey()) > 0 {
			return true
		}
	}
	return false
}

// open starts a stream and its receiver: to direct, the leader of route's
// partition, when the client knows it, else to the cluster's leader (which
// forwards). Called with p.sendMu and p.mu.
func (p *Producer) open(direct string, route *dest, routeGen uint64) (*producerStream, error) {
	addr, gen := p.c.writeTarget()
	ctx, cancel := context.WithCancel(p.ctx)
	s := &producerStream{addr: addr, gen: gen, cancel: cancel}
	if direct != "" {
		s.addr, s.route, s.routeGen = direct, route, routeGen
	}
	stream, err := p.c.client(s.addr).ProduceStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s.stream = stream
	p.streams.Go(func() { p.receive(s) })
	return s, nil
}

// receive completes s's acks in order until the stream ends, then fails
// whatever is still pending.
func (p *Producer) receive(s *producerStream) {
	defer s.cancel()
	var err error
	for {
		var resp *logv1.ProduceStreamResponse
		if resp, err = s.stream.Receive(); err != nil {
			break
		}
		p.mu.Lock()
		if len(s.pending) == 0 {
			p.mu.Unlock()
			err = fmt.Errorf("client: %s acknowledged a request that was never sent", s.addr)
			break
		}
		ap := s.pending[0]
		s.pending = s.pending[1:]
		p.mu.Unlock()
		if int(resp.GetCount()) != ap.count {
			p.complete(ap, 0, fmt.Errorf("%w: the server reports %d records appended of %d", ErrUnknownOutcome, resp.GetCount(), ap.count))
			err = errors.New("client: acknowledgement does not match the request")
			break
		}
		ap.partition = int(resp.GetPartition())
		p.complete(ap, resp.GetOffset(), nil)
	}
	_ = s.stream.CloseResponse()
	if errors.Is(err, io.EOF) {
		err = errors.New("the server ended the stream")
	}
	err = fmt.Errorf("client: ProduceStream on %s: %w", s.addr, err)
	p.mu.Lock()
	s.broken = true
	pending := s.pending
	s.pending = nil
	if p.ordered && p.failed == nil && len(pending) > 0 {
		p.failed = err // a stream that broke idle left no gap: the next Send reopens
	}
	p.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	// The server's answer speaks for every request not yet acknowledged:
	// its AppendOutcome detail (or a refusal before its handlers) says
	// whether any of them may have been written. Nothing else can.
	if !notSent(err) && (!connect.IsWireError(err) || classifyAppend(p.ctx, err) == unknown) {
		err = fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
	if staleCount(err) {
		p.c.forgetTopic(p.target.topic) // the next Send learns the partition count again
	}
	if s.route != nil && leadershipMoved(err) {
		p.c.invalidate(s.route.topic, s.routeGen) // the next stream asks where the leader went
	}
	for _, ap := range pending {
		p.complete(ap, 0, err)
	}
	if notSent(err) {
		// The acks told, learn where the next stream should go.
		p.c.afterFailure(p.ctx, s.addr, s.gen, err)
	}
}

// complete records the outcome of one part and, once every part of its
// Send has one, completes the Ack. Parts of one Send are on one stream, so
// only its receiver completes them.
func (p *Producer) complete(ap *ackPart, base uint64, err error) {
	ap.base, ap.err = base, err
	a := ap.ack
	p.mu.Lock()
	a.left--
	last := a.left == 0
	p.mu.Unlock()
	if !last {
		return
	}
	for _, q := range a.parts {
		if q.err != nil {
			a.err = q.err
			break
		}
	}
	if a.err == nil {
		first := a.parts[0] // holds record 0
		a.base = first.base
	}
	close(a.done)
	<-p.window
}

// Close sends no more requests, waits until every sent one is acknowledged
// or failed (or ctx ends, which abandons them as unknown) and stops the
// Producer.
func (p *Producer) Close(ctx context.Context) error {
	p.sendMu.Lock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.sendMu.Unlock()
		return nil
	}
	p.closed = true
	cur := p.cur
	p.mu.Unlock()
	if cur != nil {
		_ = cur.stream.CloseRequest() // the server acknowledges the rest, then ends the stream
	}
	p.sendMu.Unlock()
	done := make(chan struct{})
	go func() { p.streams.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		p.cancel()
		<-done
	}
	p.cancel()
	p.stop()
	return err
}
