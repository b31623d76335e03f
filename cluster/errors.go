package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/logstore"
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
	// time, or ctx ended while a leadership transfer held the entry back.
	// Nothing was written.
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
	// ErrRaftLogCorrupt is returned by New when this node's own Raft log
	// (<DataDir>/raft/log) fails its checks: a frame whose CRC, length or
	// index is wrong in an entry the node reads when it starts, or damage
	// that the log's open refuses to repair. The concrete error is a
	// *RaftLogCorruptError naming the file and byte position; errors.Is
	// with logstore.ErrCorrupt is true as well. Nothing was changed on
	// disk. The entries cannot be rebuilt locally: see the README's
	// "Recovering from a damaged Raft log".
	ErrRaftLogCorrupt = errors.New("cluster: raft log is corrupt")
	// ErrDiskFull is returned by Append and AppendBatch while this node's
	// disk has less free space than Config.DiskReserve, or after a write to
	// its Raft log failed with ENOSPC, until space is freed (checked every
	// second and before appends): nothing was written. It is also in the
	// chain of an append whose Raft log write itself failed with ENOSPC,
	// together with ErrUnknownOutcome. Reads keep working.
	ErrDiskFull = errors.New("cluster: disk full")
)

// RaftLogCorruptError says where this node's Raft log is damaged.
type RaftLogCorruptError struct {
	Dir   string // the Raft log's directory
	Path  string // the damaged file ("" if the log's open could not say)
	Pos   int64  // byte position in Path of the damaged frame or header
	Index uint64 // the Raft index that could not be read (0 if none in particular)
	Err   error  // what the log reported (a *logstore.CorruptError, usually)
}

func (e *RaftLogCorruptError) Error() string {
	var ce *logstore.CorruptError
	where := e.Dir
	if errors.As(e.Err, &ce) {
		where = "" // the logstore's error names the file and byte
	}
	var b strings.Builder
	b.WriteString("cluster: raft log is corrupt")
	if e.Index > 0 {
		fmt.Fprintf(&b, ": entry %d", e.Index)
	}
	if where != "" {
		fmt.Fprintf(&b, " in %s", where)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Is makes errors.Is(err, ErrRaftLogCorrupt) true.
func (e *RaftLogCorruptError) Is(target error) bool { return target == ErrRaftLogCorrupt }

func (e *RaftLogCorruptError) Unwrap() error { return e.Err }

// raftLogCorrupt wraps err, a damage the Raft log in dir reported for index
// (0: none in particular), with the file and position it names.
func raftLogCorrupt(dir string, index uint64, err error) error {
	e := &RaftLogCorruptError{Dir: dir, Index: index, Err: err}
	var ce *logstore.CorruptError
	if errors.As(err, &ce) {
		e.Path, e.Pos = ce.Path, ce.Pos
	}
	return e
}

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
