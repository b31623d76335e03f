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
// hashicorp/raft v1.8.0 can wedge its own shutdown: when a leader steps
// down (a leadership transfer, a higher term) while a pipeline to a
// follower is busy, the goroutine that decodes the follower's answers
// stops, the pipeline's queue of requests in flight fills, and the
// replication goroutine blocks in AppendEntries on a queue nobody drains;
// Shutdown waits for it for ever (hashicorp/raft#696 is one report of the
// family). Closing the pipeline releases it (AppendEntries returns
// ErrPipelineShutdown), so shutdownRaft closes whatever pipelines are left
// once raft has had a moment to stop on its own.
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
	tp := &trackedPipeline{AppendPipeline: p, t: t}
	t.mu.Lock()
	t.pipelines[tp] = struct{}{}
	t.mu.Unlock()
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

type trackedPipeline struct {
	raft.AppendPipeline
	t *transport
}

func (p *trackedPipeline) Close() error {
	p.t.mu.Lock()
	delete(p.t.pipelines, p)
	p.t.mu.Unlock()
	return p.AppendPipeline.Close() // netPipeline.Close may be called twice
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
