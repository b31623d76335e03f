package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// settle raises raft's heartbeat and election timeouts to
// Config.SettledTimeout once the group has a leader (see Config). It
// waits on a raft observer, not a poll: a node creating hundreds of
// partitions at once would otherwise wake each of them many times a
// second while they elect. It runs in bg and returns when done.
func (l *Log) settle() {
	led := make(chan raft.Observation, 1)
	obs := raft.NewObserver(led, false, func(o *raft.Observation) bool {
		lo, ok := o.Data.(raft.LeaderObservation)
		return ok && lo.LeaderID != ""
	})
	l.raft.RegisterObserver(obs)
	defer l.raft.DeregisterObserver(obs)
	if _, id := l.raft.LeaderWithID(); id == "" { // (elected before the observer was in place)
		select {
		case <-l.done:
			return
		case <-led:
		}
	}
	l.reloadRaft(func(rc *raft.ReloadableConfig) {
		rc.HeartbeatTimeout, rc.ElectionTimeout = l.cfg.SettledTimeout, l.cfg.SettledTimeout
	})
}

// leaseFits reports whether a leader lease suits a heartbeat timeout:
// raft heartbeats each follower every tenth to fifth of it, and a leader
// steps down when a quorum has not answered within its lease, so the lease
// spans at least two of the longest gaps.
func leaseFits(lease, heartbeat time.Duration) bool { return lease >= 2*heartbeat/5 }

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
