package raftmux

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipeline sends AppendEntries as raft gives them and hands the answers
// back in order, at most MaxInFlight in flight.
//
// When the connection fails under it, the pipeline dials again and sends
// every request not yet answered once more, in order, before any new one:
// raft handles a resent AppendEntries as any other (entries a follower
// already holds at the same term are kept), but it resends a failed one
// itself only at its next CommitTimeout tick or new entry. An idle group
// (proglog's partitions: 2 s ticks) would otherwise wait out a tick
// whenever a connection broke under its entries. The pipeline dials again
// (after each failed dial's backoff) until Config.Timeout after the oldest
// request's first send; only then does raft see the failure.
type pipeline struct {
	t        *Transport
	target   raft.ServerAddress
	doneCh   chan raft.AppendFuture // answered, for raft
	shutdown chan struct{}
	once     sync.Once

	mu     sync.Mutex    // guards c, queue and the futures' c and k; held while sending, so requests go out in queue order
	c      *clientConn   // where new requests go
	queue  []*future     // sent, not yet handed to raft, in order
	queued chan struct{} // 1-buffered: the queue grew
	room   chan struct{} // 1-buffered: the queue shrank
}

// future is one pipelined AppendEntries.
type future struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	// While queued, under the pipeline's mu:
	c       *clientConn // the connection k went out on
	k       *call       // nil if the last send failed
	sendErr error       // why the last send failed

	err  error // the outcome, set before done is closed
	done chan struct{}
}

func (f *future) Error() error                          { <-f.done; return f.err }
func (f *future) Start() time.Time                      { return f.start }
func (f *future) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *future) Response() *raft.AppendEntriesResponse { return f.resp }

func (t *Transport) newPipeline(target raft.ServerAddress) (*pipeline, error) {
	select {
	case <-t.done:
		return nil, raft.ErrTransportShutdown
	default:
	}
	c, err := t.m.conn(target)
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		t: t, c: c, target: target,
		doneCh:   make(chan raft.AppendFuture, t.m.cfg.MaxInFlight),
		shutdown: make(chan struct{}),
		queued:   make(chan struct{}, 1),
		room:     make(chan struct{}, 1),
	}
	if !t.m.goTracked(p.decode) {
		return nil, ErrClosed
	}
	return p, nil
}

// AppendEntries sends a request on the pipeline. Like raft's own
// transport it returns only once fewer than MaxInFlight are in flight, so
// that raft gathers the entries that come meanwhile into its next request.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case <-p.shutdown:
		return nil, raft.ErrPipelineShutdown
	default:
	}
	f := &future{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	p.t.noteSent(p.target, args)
	p.mu.Lock()
	err := p.sendLocked(f)
	if isLost(err) && p.repairLocked(f.c) {
		err = p.sendLocked(f)
	}
	if err == nil {
		p.queue = append(p.queue, f)
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case p.queued <- struct{}{}:
	default:
	}
	for {
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n < p.t.m.cfg.MaxInFlight {
			return f, nil
		}
		select {
		case <-p.room:
		case <-p.shutdown:
			return nil, raft.ErrPipelineShutdown
		case <-p.t.done:
			return nil, raft.ErrTransportShutdown
		}
	}
}

// sendLocked sends f on p.c; if that fails, f.k is nil and f.sendErr
// says why. Caller holds mu.
func (p *pipeline) sendLocked(f *future) error {
	f.c = p.c
	fr := frame{kind: reqAppendEntries, group: p.t.name, body: f.args, lazy: len(f.args.Entries) == 0, size: appendSize(f.args)}
	f.k, f.sendErr = f.c.request(fr, f.resp, p.shutdown, raft.ErrPipelineShutdown)
	return f.sendErr
}

// repairLocked moves the pipeline off failed, a connection that failed,
// unless that was done already: it dials again and sends every request
// queued on an older connection and not answered there once more, in
// order. False if it could not: no connection within Config.Timeout of
// the oldest request's first send (or of now, with none queued), or the
// pipeline shut down. Caller holds mu; senders wait meanwhile, as raft's
// own transport makes them wait while it dials.
func (p *pipeline) repairLocked(failed *clientConn) bool {
	if p.c != failed {
		return true
	}
	select {
	case <-p.shutdown:
		return false
	case <-p.t.done:
		return false
	default:
	}
	start := time.Now()
	if len(p.queue) > 0 {
		start = p.queue[0].start
	}
	c, err := p.t.m.connBefore(p.target, start.Add(p.t.m.cfg.Timeout), p.shutdown)
	if err != nil {
		return false
	}
	p.c = c
	for _, f := range p.queue {
		if f.c == c {
			continue
		}
		if f.k != nil {
			// failed has failed: every call on it is closed, or is
			// being decoded by its reader and closed just after.
			<-f.k.done
			if f.k.err == nil {
				continue // answered before the connection failed
			}
		}
		*f.resp = raft.AppendEntriesResponse{}
		if err := p.sendLocked(f); err != nil {
			return false
		}
	}
	return true
}

// Consumer gives raft the answered requests, in the order sent.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close stops the pipeline; its requests in flight are forgotten.
func (p *pipeline) Close() error {
	p.once.Do(func() { close(p.shutdown) })
	return nil
}

// head is the oldest request not yet handed to raft, once there is one;
// nil when the pipeline or the transport shut down.
func (p *pipeline) head() *future {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			f := p.queue[0]
			p.mu.Unlock()
			return f
		}
		p.mu.Unlock()
		select {
		case <-p.queued:
		case <-p.shutdown:
			return nil
		case <-p.t.done:
			return nil
		}
	}
}

// sent is the connection and call f went out on last, or why that send
// failed.
func (p *pipeline) sent(f *future) (*clientConn, *call, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.c, f.k, f.sendErr
}

// decode waits for each request's answer in order and hands it to raft.
func (p *pipeline) decode() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() { // forget what is left
		p.mu.Lock()
		for _, f := range p.queue {
			if f.k != nil {
				f.c.forget(f.k)
			}
		}
		p.queue = nil
		p.mu.Unlock()
	}()
	for {
		f := p.head()
		if f == nil {
			return
		}
		timer.Reset(p.t.m.cfg.Timeout - time.Since(f.start))
		ok, err := p.await(f, timer)
		if !ok {
			return
		}
		f.err = err
		timer.Stop()
		if f.err != nil {
			// raft reads only the response (a zero one stops the pipeline).
			*f.resp = raft.AppendEntriesResponse{}
		} else {
			p.t.noteAnswer(p.target, f.args, f.resp)
		}
		p.mu.Lock()
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		select {
		case p.room <- struct{}{}:
		default:
		}
		close(f.done)
		select {
		case p.doneCh <- f:
		case <-p.shutdown:
			return
		case <-p.t.done:
			return
		}
	}
}

// await waits for f's answer, or says why there is none, until timer
// fires; while f's connection fails under it, it moves the pipeline to a
// new one (repairLocked) and waits again. False if the pipeline or the
// transport shut down.
func (p *pipeline) await(f *future, timer *time.Timer) (bool, error) {
	for {
		c, k, err := p.sent(f)
		if k == nil { // its last send failed
			return true, err
		}
		select {
		case <-k.done:
			if !isLost(k.err) {
				return true, k.err
			}
			p.mu.Lock()
			repaired := p.repairLocked(c)
			p.mu.Unlock()
			if !repaired {
				return true, k.err
			}
		case <-timer.C:
			if c.forget(k) {
				c.timedOut(f.start)
				return true, fmt.Errorf("%w: no answer from %s within %v", ErrTimeout, p.target, p.t.m.cfg.Timeout)
			}
			<-k.done
			return true, k.err
		case <-p.shutdown:
			return false, nil
		case <-p.t.done:
			return false, nil
		}
	}
}

// isLost reports whether err is a connection's failure, which leaves a
// request sent on it unanswered: the peer may or may not have handled it.
func isLost(err error) bool {
	var l *lostError
	return errors.As(err, &l)
}
