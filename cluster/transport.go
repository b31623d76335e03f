package cluster

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/raftmux"
)

// transport is the group's raft.Transport, raft's NetworkTransport or a
// raftmux.Transport (embedded through an interface that keeps the
// optional interfaces raft looks for, WithClose and WithPreVote, visible),
// keeping track of the replication pipelines it opens.
//
// hashicorp/raft v1.8.0's pipelined replication can wedge (the family of
// hashicorp/raft#612 and #696): the goroutine that reads a pipeline's
// answers (pipelineDecode) stops at the first failed one (a follower
// whose log lacks the previous entry, as after a pause, or a newer term),
// but the goroutine that sends may still send more before it notices,
// since its select picks at random between "the decoder stopped" and "new
// entries". A transport whose decoder then waits to hand raft an answer
// nobody reads stops taking requests, and that send blocks for ever: the
// follower gets heartbeats but never another entry, and the group cannot
// shut down. NetworkTransport's queues hold nothing at its default of 2
// in flight and raftmux's pipeline holds 2, so one or a few such sends
// are enough. Every pipeline is therefore wrapped (trackedPipeline) so
// that the transport's answers are always taken at once: the sender never
// waits on raft's reader, sees the decoder gone at its next turn, and
// closes the pipeline. As a last resort shutdownRaft also closes whatever
// pipelines are left once raft has had a moment to stop on its own.
type transport struct {
	fullTransport
	aside atomic.Bool // standAside: this node asks no one for votes...
	// ...unless lastResort says the group has been without a leader for
	// long (set once raft runs).
	lastResort func() bool
	mu         sync.Mutex // guards pipelines
	pipelines  map[*trackedPipeline]struct{}
}

// fullTransport is what both of proglog's transports implement.
type fullTransport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

var (
	_ fullTransport = (*raft.NetworkTransport)(nil)
	_ fullTransport = (*raftmux.Transport)(nil)
)

// openTransport opens the transport of cfg's group: the system group's
// (Group "") is always a NetworkTransport on the StreamLayer itself, which
// nodes of every version speak; a named group's is a raftmux.Transport on
// the node's Mux, or with RaftTransport TransportStream a NetworkTransport
// on the group's own connections (StreamLayer.Group).
func openTransport(cfg Config) (*transport, error) {
	if cfg.Group != "" && cfg.RaftTransport == TransportMux {
		t, err := cfg.Stream.mux.Transport(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		return newTransport(t), nil
	}
	var stream raft.StreamLayer = cfg.Stream
	if cfg.Group != "" {
		g, err := cfg.Stream.Group(cfg.Group)
		if err != nil {
			return nil, err
		}
		stream = g
	}
	return newTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 5,
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(cfg.Logger, "raft-net"),
	})), nil
}

// pushCommits turns on the Mux's commit pushes (raftmux/commit.go): a
// follower learns the commit index moments after the leader commits
// instead of at raft's next CommitTimeout tick. The NetworkTransport has
// none.
func (t *transport) pushCommits(commitIndex func() uint64) {
	if mt, ok := t.fullTransport.(*raftmux.Transport); ok {
		mt.SetCommitIndex(commitIndex)
	}
}

func newTransport(t fullTransport) *transport {
	return &transport{fullTransport: t, pipelines: map[*trackedPipeline]struct{}{}}
}

func (t *transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.fullTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &trackedPipeline{
		AppendPipeline: p, t: t,
		answers: make(chan raft.AppendFuture), stop: make(chan struct{}), done: make(chan struct{}),
	}
	t.mu.Lock()
	t.pipelines[tp] = struct{}{}
	t.mu.Unlock()
	go tp.relay()
	return tp, nil
}

// closePipelines closes every pipeline still open.
func (t *transport) closePipelines() int {
	t.mu.Lock()
	open := make([]*trackedPipeline, 0, len(t.pipelines))
	for p := range t.pipelines {
		open = append(open, p)
	}
	t.mu.Unlock()
	for _, p := range open {
		p.Close()
	}
	return len(open)
}

// trackedPipeline is an open pipeline whose answers it takes from the
// transport as they come and keeps, in order, until raft reads them: the
// transport never waits on raft's reader (see transport).
type trackedPipeline struct {
	raft.AppendPipeline
	t       *transport
	answers chan raft.AppendFuture // raft's Consumer
	stop    chan struct{}          // closed by Close
	done    chan struct{}          // closed when relay returns
	once    sync.Once
}

// relay moves the transport's answers to raft. What it holds is the
// answers raft has not read: a few while raft reads them, and at most the
// requests raft sends after its reader stopped, before it closes the
// pipeline.
func (p *trackedPipeline) relay() {
	defer close(p.done)
	in := p.AppendPipeline.Consumer()
	var held []raft.AppendFuture
	for {
		var (
			out  chan raft.AppendFuture
			next raft.AppendFuture
		)
		if len(held) > 0 {
			out, next = p.answers, held[0]
		}
		select {
		case f, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			held = append(held, f)
		case out <- next:
			held[0] = nil
			held = held[1:]
		case <-p.stop:
			return
		}
	}
}

func (p *trackedPipeline) Consumer() <-chan raft.AppendFuture { return p.answers }

func (p *trackedPipeline) Close() error {
	p.t.mu.Lock()
	delete(p.t.pipelines, p)
	p.t.mu.Unlock()
	err := p.AppendPipeline.Close() // netPipeline.Close may be called twice
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return err
}

// pipelineGrace is how long shutdownRaft lets raft stop its replication by
// itself before it closes the pipelines under it.
const pipelineGrace = time.Second

// errStandingAside fails the vote requests of a node that cannot apply.
var errStandingAside = errors.New("cluster: this node cannot apply and does not stand for election")

// RequestVote asks target for its vote, unless this node stands aside.
func (t *transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.standsAside() {
		return errStandingAside
	}
	return t.fullTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote asks target whether it would vote, unless this node
// stands aside. With pre-votes failing, a node standing aside never raises
// its term, so it does not unseat the leader the others elect.
func (t *transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.standsAside() {
		return errStandingAside
	}
	return t.fullTransport.RequestPreVote(id, target, args, resp)
}

// standsAside reports whether this node's vote requests fail now: it
// cannot apply, and the group has had a leader lately. After a long time
// without one it stands after all: its log may be the only one among the
// live voters that holds every committed entry (then no other can win),
// and once elected it hands leadership to a follower it has caught up
// (Log.stepDown).
func (t *transport) standsAside() bool {
	return t.aside.Load() && (t.lastResort == nil || !t.lastResort())
}
