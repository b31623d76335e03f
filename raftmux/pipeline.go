package raftmux

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipeline sends AppendEntries as raft gives them and hands the answers
// back in order, at most MaxInFlight in flight.
type pipeline struct {
	t        *Transport
	c        *clientConn
	target   raft.ServerAddress
	inflight chan *future           // sent, waiting for the answer, in order
	doneCh   chan raft.AppendFuture // answered, for raft
	shutdown chan struct{}
	once     sync.Once
}

// future is one pipelined AppendEntries.
type future struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	k     *call
	err   error
	done  chan struct{}
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
		// One request waits in decode and one more is sent before its
		// AppendEntries blocks on a full channel: MaxInFlight-2 more.
		inflight: make(chan *future, t.m.cfg.MaxInFlight-2),
		doneCh:   make(chan raft.AppendFuture, t.m.cfg.MaxInFlight),
		shutdown: make(chan struct{}),
	}
	if !t.m.goTracked(p.decode) {
		return nil, ErrClosed
	}
	return p, nil
}

// AppendEntries sends a request on the pipeline; it waits while
// MaxInFlight are in flight.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case <-p.shutdown:
		return nil, raft.ErrPipelineShutdown
	default:
	}
	f := &future{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	k, err := p.c.start(resp)
	if err != nil {
		return nil, err
	}
	f.k = k
	p.t.noteSent(p.target, args)
	err = p.c.w.send(frame{kind: reqAppendEntries, id: k.id, group: p.t.name, body: args, lazy: len(args.Entries) == 0, size: appendSize(args)}, p.shutdown)
	if err != nil {
		p.c.forget(k)
		if err == errCanceled {
			err = raft.ErrPipelineShutdown
		}
		return nil, err
	}
	select {
	case p.inflight <- f:
		return f, nil
	case <-p.shutdown:
		p.c.forget(k)
		return nil, raft.ErrPipelineShutdown
	case <-p.t.done:
		p.c.forget(k)
		return nil, raft.ErrTransportShutdown
	}
}

// Consumer gives raft the answered requests, in the order sent.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close stops the pipeline; its requests in flight are forgotten.
func (p *pipeline) Close() error {
	p.once.Do(func() { close(p.shutdown) })
	return nil
}

// decode waits for each request's answer in order and hands it to raft.
func (p *pipeline) decode() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		for { // forget what is left
			select {
			case f := <-p.inflight:
				p.c.forget(f.k)
			default:
				return
			}
		}
	}()
	for {
		var f *future
		select {
		case f = <-p.inflight:
		case <-p.shutdown:
			return
		case <-p.t.done:
			return
		}
		timer.Reset(p.t.m.cfg.Timeout - time.Since(f.start))
		select {
		case <-f.k.done:
			f.err = f.k.err
		case <-timer.C:
			if p.c.forget(f.k) {
				p.c.timedOut(f.start)
				f.err = fmt.Errorf("%w: no answer from %s within %v", ErrTimeout, p.target, p.t.m.cfg.Timeout)
			} else {
				<-f.k.done
				f.err = f.k.err
			}
		case <-p.shutdown:
			p.c.forget(f.k)
			return
		case <-p.t.done:
			p.c.forget(f.k)
			return
		}
		timer.Stop()
		if f.err != nil {
			// raft reads only the response (a zero one stops the pipeline).
			*f.resp = raft.AppendEntriesResponse{}
		} else {
			p.t.noteAnswer(p.target, f.args, f.resp)
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
