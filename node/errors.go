package node

import (
	"errors"
	"fmt"
	"path/filepath"
)

// ErrConfig is in the chain of every error New returns for a Config that
// is wrong on its own or for the data dir it names (Insecure on a data dir
// with Raft state, Join on one that runs a cluster of its own, Bootstrap
// and Join on a first start). Nothing was started, and the data dir is as
// it was. proglog serve exits with its usage code for it.
var ErrConfig = errors.New("node: invalid configuration")

// configError is an ErrConfig that reads as its message alone: the
// operator sees what to change, not the sentinel.
type configError struct{ msg string }

func (e *configError) Error() string        { return e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfig }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// The messages below speak to the operator of proglog serve, who meets
// them at a terminal: they name the flags that fix the problem.

// existingStoreAdvice says what to do about a joining node whose store
// already holds records (cluster.ErrExistingStore).
func existingStoreAdvice(err error, dataDir string) error {
	return fmt.Errorf("%w: %s holds records this node served before it ran Raft; a node that joins starts from an empty log "+
		"and receives the cluster's records through Raft. Give the joining node a fresh --data-dir, "+
		"or start this one without --join: it then keeps its records as the start of a new cluster that others can join", err, filepath.Join(dataDir, "log"))
}

// raftLogCorruptAdvice says what an operator can do about a damaged Raft
// log, in one paragraph (the README's "A damaged Raft log" says the same).
// Nothing on disk has been changed when it is shown.
func raftLogCorruptAdvice(err error, dataDir string) error {
	raftDir, logDir := filepath.Join(dataDir, "raft"), filepath.Join(dataDir, "log")
	return fmt.Errorf("%w. This node's own Raft log is damaged, so it refused to start; nothing on disk was changed, and the log cannot be repaired in place. "+
		"In a cluster whose other members still have a leader: keep this node stopped, rename %s, %s and %s to <name>.broken, "+
		"and start it with a NEW --node-id and --join <a member's gossip address>: the leader replaces the old member at this address "+
		"and the node catches up from its peers (never restart it under its old --node-id without its log while the cluster still lists it: it would vote as if it still had it); "+
		"or start it with --recover-from-peers, which has the leader remove the old member first and then does this under the same --node-id. "+
		"On a single node: rename %s to %s.broken and start it again: it adopts the records in %s as a new one-member cluster and loses only "+
		"records it had acknowledged but not yet written there (none after a clean stop, at most the last minute's after a machine crash)",
		err, raftDir, logDir, filepath.Join(dataDir, "serf.snapshot"), raftDir, raftDir, logDir)
}
