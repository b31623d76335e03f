package raftmux

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Commit pushes: hashicorp/raft tells a follower the leader's commit index
// only in its next AppendEntries, which for an idle group is the next
// CommitTimeout tick (raft's default 50 ms, and those ticks are most of an
// idle group's RPCs). With SetCommitIndex, the leader's transport sends the
// follower that commit index itself, moments after the leader commits:
//
// Once a follower answers an AppendEntries with entries with success, the
// transport knows that the follower's log holds the leader's entries up
// to the request's last one, N (index and term). When the leader's commit
// index (SetCommitIndex's function) then exceeds what raft last sent that
// follower, the transport sends it an AppendEntries of its own: the same
// term and leader, previous entry N, no entries, LeaderCommitIndex =
// min(commit index, N). The follower's raft handles it as any
// AppendEntries: it refuses it if its term is newer or it no longer holds
// N at that term (then a newer leader rewrote its log), and otherwise
// commits up to that index, entries its log shares with the leader's (log
// matching), which the leader's commit index says are committed. The
// answer is dropped, so the leader's raft never counts it as contact or as
// replication progress: a push only ever carries facts already true (these
// entries are committed, and the follower holds them), and a lost one costs
// only the lag raft's next AppendEntries makes up for.
//
// The pushes let a group run a long CommitTimeout (proglog's partitions:
// 2 s) without followers applying records that much later.

// pushDelay is how long after a follower's answer the transport first
// looks at the leader's commit index (the leader commits once it has
// processed the answers of a quorum); pushTries bounds how often it looks
// again, doubling the wait, before leaving it to raft's next AppendEntries.
// Under a steady stream of writes raft's next AppendEntries, carrying the
// new commit index, usually leaves within pushDelay, and then there is
// nothing to push: pushes cost a busy group (whose followers' rafts handle
// AppendEntries one at a time) next to nothing, and an idle group's
// followers learn the commit index about pushDelay after the leader.
//
// pushEvery spaces one follower's pushes: a group written to every few
// milliseconds would otherwise have each entry followed by a push (raft's
// next AppendEntries not yet under way), doubling what its followers'
// rafts handle; spaced, a busy group costs at most 1/pushEvery pushes a
// second per follower, fewer than raft's own 50 ms CommitTimeout ticks,
// and a follower lags by at most about pushEvery.
const (
	pushDelay = 5 * time.Millisecond
	pushTries = 5
	pushEvery = 50 * time.Millisecond
)

// pushState is what the transport knows of one follower of the group,
// while this node leads it.
type pushState struct {
	mu         sync.Mutex // guards the rest
	term       uint64     // of the requests below
	header     raft.RPCHeader
	leader     []byte
	sentCommit uint64 // highest LeaderCommitIndex sent in term
	match      uint64 // the follower holds the leader's log up to here (in term)
	matchTerm  uint64
	pushing    bool      // a push is scheduled or under way
	lastPush   time.Time // when the latest push was sent
}

// newTerm forgets what was known in earlier terms. Caller holds mu.
func (p *pushState) newTerm(term uint64) {
	p.term, p.header, p.leader = term, raft.RPCHeader{}, nil
	p.sentCommit, p.match, p.matchTerm = 0, 0, 0
}

// SetCommitIndex gives the transport the group's commit index (raft's
// Raft.CommitIndex) and turns commit pushes on; see the package's
// commit.go.
func (t *Transport) SetCommitIndex(f func() uint64) {
	t.pushMu.Lock()
	t.commitIndex = f
	t.pushMu.Unlock()
}

// follower is the push state of target, nil if pushes are off.
func (t *Transport) follower(target raft.ServerAddress) (*pushState, func() uint64) {
	t.pushMu.Lock()
	defer t.pushMu.Unlock()
	if t.commitIndex == nil {
		return nil, nil
	}
	p := t.pushes[target]
	if p == nil {
		if t.pushes == nil {
			t.pushes = map[raft.ServerAddress]*pushState{}
		}
		p = &pushState{}
		t.pushes[target] = p
	}
	return p, t.commitIndex
}

// noteSent records the commit index raft sends target.
func (t *Transport) noteSent(target raft.ServerAddress, args *raft.AppendEntriesRequest) {
	p, _ := t.follower(target)
	if p == nil {
		return
	}
	p.mu.Lock()
	if args.Term > p.term {
		p.newTerm(args.Term)
	}
	if args.Term == p.term {
		p.sentCommit = max(p.sentCommit, args.LeaderCommitIndex)
	}
	p.mu.Unlock()
}

// noteAnswer records a successful answer of target to args and schedules
// a push.
func (t *Transport) noteAnswer(target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if !resp.Success || len(args.Entries) == 0 {
		return
	}
	p, _ := t.follower(target)
	if p == nil {
		return
	}
	last := args.Entries[len(args.Entries)-1]
	p.mu.Lock()
	defer p.mu.Unlock()
	if args.Term < p.term || last.Index <= p.match && args.Term == p.term {
		return
	}
	if args.Term > p.term {
		p.newTerm(args.Term)
	}
	//lint:ignore SA1019 raft still reads Leader from peers of older versions; a push says what raft said
	p.header, p.leader = args.RPCHeader, args.Leader
	p.match, p.matchTerm = last.Index, last.Term
	if !p.pushing {
		p.pushing = true
		time.AfterFunc(p.nextDelay(), func() { t.push(target, p, 0) })
	}
}

// nextDelay is how long to wait before the next push. Caller holds mu.
func (p *pushState) nextDelay() time.Duration {
	return max(pushDelay, time.Until(p.lastPush.Add(pushEvery)))
}

// push sends target the leader's commit index if raft has not, waiting
// (up to pushTries times) for the leader to commit what target holds.
func (t *Transport) push(target raft.ServerAddress, p *pushState, try int) {
	select {
	case <-t.done:
		return
	default:
	}
	_, commitIndex := t.follower(target)
	commit := commitIndex()
	p.mu.Lock()
	upTo := min(commit, p.match)
	if upTo <= p.sentCommit {
		if commit < p.match && try+1 < pushTries {
			time.AfterFunc(pushDelay<<(try+1), func() { t.push(target, p, try+1) })
		} else {
			p.pushing = false
		}
		p.mu.Unlock()
		return
	}
	req := &raft.AppendEntriesRequest{
		RPCHeader: p.header, Term: p.term,
		PrevLogEntry: p.match, PrevLogTerm: p.matchTerm, LeaderCommitIndex: upTo,
	}
	//lint:ignore SA1019 raft still reads Leader from peers of older versions; a push says what raft said
	req.Leader = p.leader
	p.sentCommit = upTo
	p.lastPush = time.Now()
	p.mu.Unlock()
	var resp raft.AppendEntriesResponse
	// Urgent, unlike raft's own AppendEntries without entries: a push
	// follows writes, and its point is to arrive soon.
	_ = t.roundTrip(target, reqAppendEntries, req, &resp, false, 128) // the answer is not raft's
	p.mu.Lock()
	if p.match > upTo {
		time.AfterFunc(p.nextDelay(), func() { t.push(target, p, 0) })
	} else {
		p.pushing = false
	}
	p.mu.Unlock()
}
