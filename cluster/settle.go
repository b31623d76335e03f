package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// settle raises raft's heartbeat and election timeouts to
// Config.SettledTimeout once the group has a leader (see Config). Until
// then it looks every settlePoll; it runs in bg and returns when done.
func (l *Log) settle() {
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if _, id := l.raft.LeaderWithID(); id == "" {
			continue
		}
		l.reloadRaft(func(rc *raft.ReloadableConfig) {
			rc.HeartbeatTimeout, rc.ElectionTimeout = l.cfg.SettledTimeout, l.cfg.SettledTimeout
		})
		return
	}
}

// leaseFits reports whether a leader lease suits a heartbeat timeout:
// raft heartbeats each follower every tenth to fifth of it, and a leader
// steps down when a quorum has not answered within its lease, so the lease
// spans at least two of the longest gaps.
func leaseFits(lease, heartbeat time.Duration) bool { return lease >= 2*heartbeat/5 }

// settlePoll is how often settle looks for a leader: a fraction of any
// heartbeat timeout, and it stops once one is found.
const settlePoll = 50 * time.Millisecond

// reloadRaft changes raft's reloadable configuration. ReloadConfig takes
// every field, so read-modify-write is serialized, or one change could
// undo another (settle's and sizeTrailingLogs').
func (l *Log) reloadRaft(change func(*raft.ReloadableConfig)) {
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	rc := l.raft.ReloadableConfig()
	change(&rc)
	if err := l.raft.ReloadConfig(rc); err != nil {
		l.logger.Warn("cluster: reload raft's configuration", "err", err)
	}
}
