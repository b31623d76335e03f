package cluster

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// transport is raft's NetworkTransport (embedded whole, so the optional
// interfaces raft looks for, such as WithClose and WithPreVote, stay
// visible) that keeps track of the replication pipelines it opens.
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
	*raft.NetworkTransport
	aside atomic.Bool // standAside: this node asks no one for votes...
	// ...unless lastResort says the group has been without a leader for
	// long (set once raft runs).
	lastResort func() bool
	mu         sync.Mutex
	pipelines  map[*trackedPipeline]struct{}
}

func newTransport(cfg *raft.NetworkTransportConfig) *transport {
	return &transport{NetworkTransport: raft.NewNetworkTransportWithConfig(cfg), pipelines: map[*trackedPipeline]struct{}{}}
}

func (t *transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
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
	return t.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote asks target whether it would vote, unless this node
// stands aside. With pre-votes failing, a node standing aside never raises
// its term, so it does not unseat the leader the others elect.
func (t *transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.standsAside() {
		return errStandingAside
	}
	return t.NetworkTransport.RequestPreVote(id, target, args, resp)
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
