package cluster

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrNotLeader is returned by Append, AppendBatch, Join and Leave on a node
	// that is not the leader. Nothing was written. The concrete error is a
	// *NotLeaderError naming the leader, if one is known, so the caller can
	// forward the request. errors.Is(err, raft.ErrNotLeader) is true as well.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrUnknownOutcome is returned by Append and AppendBatch when the entry
	// left this node but its fate is unknown: leadership was lost while it
	// was being committed, ctx ended first, or the node shut down (raft
	// then answers even committed entries it has not applied with
	// ErrRaftShutdown). It may be committed (and then appear in the log) or
	// not; retrying may duplicate it.
	ErrUnknownOutcome = errors.New("cluster: outcome unknown")
	// ErrTimeout is returned when raft could not even queue the entry in
	// time. Nothing was written.
	ErrTimeout = errors.New("cluster: timed out queueing the entry")
	// ErrClosed is returned after Close, and by reads while the local log is
	// being replaced by a snapshot restore.
	ErrClosed = errors.New("cluster: closed")
	// ErrApplyFailed is returned when this node's copy of the log could not
	// apply committed entries (disk full, I/O error, a local record that
	// differs from the committed one). The node stops applying until it is
	// restarted; the entries stay committed in the cluster.
	ErrApplyFailed = errors.New("cluster: applying committed entries failed")
	// ErrExistingStore is returned by New when the record store holds
	// records but Raft has no state and the node is not bootstrapping: a
	// joining node would receive the cluster's records at offsets its own
	// records hold. (A bootstrapping node adopts them.)
	ErrExistingStore = errors.New("cluster: record store without raft state")
	// ErrOldRaftState is returned by New for a data directory whose Raft
	// state an older proglog wrote in a format this one does not read.
	ErrOldRaftState = errors.New("cluster: raft state in an old format")
)

// NotLeaderError says which node leads, when that is known.
type NotLeaderError struct {
	LeaderID   string // "" when no leader is known
	LeaderAddr string // the leader's RPC address (host:port)
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "cluster: not the leader, and no leader is known"
	}
	return fmt.Sprintf("cluster: not the leader; the leader is %q at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is true for ErrNotLeader and raft.ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || target == raft.ErrNotLeader
}
