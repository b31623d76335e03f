package raftmux

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is one group's raft.Transport over its node's Mux. It also
// implements raft.WithClose and raft.WithPreVote.
type Transport struct {
	m    *Mux
	name string

	consumeCh chan raft.RPC
	inbound   chan inboundRPC // requests waiting for raft, bounded
	done      chan struct{}   // closed by Close
	stopped   chan struct{}   // closed when the dispatcher has returned
	hbMu      sync.RWMutex    // guards heartbeat
	heartbeat func(raft.RPC)  // raft's fast path for heartbeats
	closeOnce sync.Once
	// closeMu orders deliver's enqueueing before Close's close(done), so
	// the dispatcher's drain answers every request that got into inbound.
	closeMu sync.RWMutex

	pushMu      sync.Mutex // guards commitIndex, pushes (commit.go)
	commitIndex func() uint64
	pushes      map[raft.ServerAddress]*pushState
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// inboundRPC is a peer's request for this group, with where to answer.
type inboundRPC struct {
	w    *writer
	id   uint64
	cmd  any
	lazy bool
}

// Transport registers the group name on this node and returns its
// transport; every node of the group registers the same name. The name
// is 1 to 255 bytes. A name can be registered again once its Transport is
// closed.
func (m *Mux) Transport(name string) (*Transport, error) {
	if name == "" || len(name) > 255 {
		return nil, fmt.Errorf("raftmux: group name of %d bytes, want 1 to 255", len(name))
	}
	t := &Transport{
		m: m, name: name,
		consumeCh: make(chan raft.RPC),
		inbound:   make(chan inboundRPC, m.cfg.InboundQueue),
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.groups[name]; ok {
		return nil, fmt.Errorf("raftmux: raft group %q is already running on this node", name)
	}
	m.groups[name] = t
	m.wg.Go(t.dispatch)
	return t, nil
}

// Name is the group's name.
func (t *Transport) Name() string { return t.name }

// Close stops this group only: its requests in flight fail with
// raft.ErrTransportShutdown, its peers' requests waiting for its raft are
// answered with an error, and the name is free again. It is safe to call
// more than once.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.m.mu.Lock()
		if t.m.groups[t.name] == t {
			delete(t.m.groups, t.name)
		}
		t.m.mu.Unlock()
		t.closeMu.Lock()
		close(t.done)
		t.closeMu.Unlock()
		<-t.stopped
	})
	return nil
}

// Consumer is where raft receives its peers' requests.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr is the node's Raft address.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.m.cfg.Addr }

// SetHeartbeatHandler sets raft's fast path for heartbeats.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.hbMu.Lock()
	t.heartbeat = cb
	t.hbMu.Unlock()
}

// EncodePeer and DecodePeer: a peer is its address.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte { return []byte(addr) }
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress                     { return raft.ServerAddress(b) }

// AppendEntries sends an AppendEntries request and waits for its answer.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.noteSent(target, args)
	err := t.roundTrip(target, reqAppendEntries, args, resp, len(args.Entries) == 0, appendSize(args))
	if isLost(err) && len(args.Entries) > 0 {
		// Once more, on a new connection: raft would resend these entries
		// only at its next CommitTimeout tick or new entry (see pipeline).
		// Not after a backoff, unlike a pipeline: raft's shutdown waits
		// for this call, and nothing closes it early.
		*resp = raft.AppendEntriesResponse{}
		err = t.roundTrip(target, reqAppendEntries, args, resp, false, appendSize(args))
	}
	if err == nil {
		t.noteAnswer(target, args, resp)
	}
	return err
}

// RequestVote sends a RequestVote request and waits for its answer.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.roundTrip(target, reqRequestVote, args, resp, false, 128)
}

// RequestPreVote sends a RequestPreVote request and waits for its answer.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.roundTrip(target, reqRequestPreVote, args, resp, false, 128)
}

// TimeoutNow sends a TimeoutNow request and waits for its answer.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.roundTrip(target, reqTimeoutNow, args, resp, false, 128)
}

// appendSize estimates an AppendEntries request's encoded size.
func appendSize(args *raft.AppendEntriesRequest) int {
	n := 128
	for _, e := range args.Entries {
		n += 64 + len(e.Data) + len(e.Extensions)
	}
	return n
}

// send starts a call of this group to target and queues its request.
func (t *Transport) send(target raft.ServerAddress, typ byte, args, resp any, lazy bool, size int) (*clientConn, *call, error) {
	select {
	case <-t.done:
		return nil, nil, raft.ErrTransportShutdown
	default:
	}
	c, err := t.m.conn(target)
	if err != nil {
		return nil, nil, err
	}
	k, err := c.request(frame{kind: typ, group: t.name, body: args, lazy: lazy, size: size}, resp, t.done, raft.ErrTransportShutdown)
	if err != nil {
		return nil, nil, err
	}
	return c, k, nil
}

// roundTrip sends a request and waits for its answer, the timeout, or the
// group's Close. If the connection failed under it, it returns once the
// connection's writer has stopped, so a caller may change args then
// (raft changes an AppendEntries it sent again).
func (t *Transport) roundTrip(target raft.ServerAddress, typ byte, args, resp any, lazy bool, size int) error {
	sent := time.Now()
	c, k, err := t.send(target, typ, args, resp, lazy, size)
	if err != nil {
		return err
	}
	timer := time.NewTimer(t.m.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-k.done:
		if isLost(k.err) {
			<-c.w.stopped
		}
		return k.err
	case <-timer.C:
		if c.forget(k) {
			c.timedOut(sent)
			return fmt.Errorf("%w: no answer from %s within %v", ErrTimeout, target, t.m.cfg.Timeout)
		}
	case <-t.done:
		if c.forget(k) {
			return raft.ErrTransportShutdown
		}
	}
	<-k.done // the reader took it: it is being decoded now
	return k.err
}

// InstallSnapshot streams a snapshot to target on a connection of its own.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	select {
	case <-t.done:
		return raft.ErrTransportShutdown
	default:
	}
	return t.m.installSnapshot(t, target, args, resp, data)
}

// AppendEntriesPipeline opens a pipeline of AppendEntries to target.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	return t.newPipeline(target)
}

// deliver hands a peer's request to this group: a heartbeat to raft's
// fast path at once, anything else to the group's queue.
func (t *Transport) deliver(in inboundRPC) {
	if req, ok := in.cmd.(*raft.AppendEntriesRequest); ok && isHeartbeat(req) {
		t.hbMu.RLock()
		fn := t.heartbeat
		t.hbMu.RUnlock()
		if fn != nil {
			respCh := make(chan raft.RPCResponse, 1)
			fn(raft.RPC{Command: in.cmd, RespChan: respCh})
			select {
			case r := <-respCh:
				answer(in, r)
			default: // raft is shutting down and ignored it
				answer(in, raft.RPCResponse{Error: raft.ErrRaftShutdown})
			}
			return
		}
	}
	t.closeMu.RLock()
	var err error
	select {
	case <-t.done:
		err = raft.ErrTransportShutdown
	default:
		select {
		case t.inbound <- in:
		default:
			err = ErrBusy
		}
	}
	t.closeMu.RUnlock()
	if err != nil {
		answer(in, raft.RPCResponse{Error: err})
	}
}

// isHeartbeat is NetworkTransport's test for raft's heartbeats.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		//lint:ignore SA1019 a peer of an older raft sets only Leader, as NetworkTransport's test allows
		leader = req.Leader
	}
	return req.Term != 0 && leader != nil && req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// dispatch feeds the group's queued requests to raft, one at a time, and
// sends each answer back, until the group is closed.
func (t *Transport) dispatch() {
	defer close(t.stopped)
	for {
		select {
		case in := <-t.inbound:
			respCh := make(chan raft.RPCResponse, 1)
			select {
			case t.consumeCh <- raft.RPC{Command: in.cmd, RespChan: respCh}:
			case <-t.done:
				answer(in, raft.RPCResponse{Error: raft.ErrTransportShutdown})
				t.drain()
				return
			}
			select {
			case r := <-respCh:
				answer(in, r)
			case <-t.done:
				answer(in, raft.RPCResponse{Error: raft.ErrTransportShutdown})
				t.drain()
				return
			}
		case <-t.done:
			t.drain()
			return
		}
	}
}

// drain answers the requests still queued with an error.
func (t *Transport) drain() {
	for {
		select {
		case in := <-t.inbound:
			answer(in, raft.RPCResponse{Error: raft.ErrTransportShutdown})
		default:
			return
		}
	}
}

// answer queues the answer to a peer's request. If its connection has
// failed the peer's call fails with it, so an error here is dropped.
func answer(in inboundRPC, r raft.RPCResponse) {
	f := frame{kind: statusOK, id: in.id, body: r.Response, lazy: in.lazy, size: 128}
	if r.Error != nil {
		f.kind, f.body = statusError, r.Error.Error()
	}
	_ = in.w.send(f, nil)
}
