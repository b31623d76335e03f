package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Ready reports whether this node serves its share of the group now: it
// knows a leader it has heard from within two heartbeat timeouts (or
// leads), has applied every entry it knows to be committed, and can write
// (CanWrite). nil means ready; the error says what is missing. Being a
// member of the group follows: a leader sends to the members of its
// configuration only, so a node not (yet, or no longer) among them hears
// from none, and Ready costs no round trip through raft's loop (a node
// asks it of every partition it hosts, every second). A node that
// restarts is not ready until the leader has reached it and it has caught
// up, which is what a rolling restart waits for before it stops the next
// node.
func (l *Log) Ready() error {
	state := l.raft.State()
	if state == raft.Shutdown {
		return ErrClosed
	}
	leader, _ := l.Leader()
	switch {
	case leader == "":
		return fmt.Errorf("cluster: not ready: no leader known")
	case state != raft.Leader:
		limit := 2 * l.raft.ReloadableConfig().HeartbeatTimeout
		if since := time.Since(l.raft.LastContact()); since > limit {
			return fmt.Errorf("cluster: not ready: nothing heard from the leader %s for %v", leader, since.Round(time.Millisecond))
		}
	}
	if applied, commit := l.raft.AppliedIndex(), l.raft.CommitIndex(); applied < commit {
		return fmt.Errorf("cluster: not ready: applied up to entry %d of %d committed", applied, commit)
	}
	return l.CanWrite()
}
