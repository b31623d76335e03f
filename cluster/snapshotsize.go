package cluster

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// defaultSnapshotBytes is Config.SnapshotBytes's default: a restart replays
// (reads from Raft's log and writes into the store again) at most about
// this much, and a snapshot costs one fdatasync and a hard link per segment.
const defaultSnapshotBytes = 64 << 20

// snapshotCheckEvery is how often snapshotBySize looks at the count.
const snapshotCheckEvery = 250 * time.Millisecond

// snapshotBySize takes a snapshot whenever the entries applied since the
// latest one add up to Config.SnapshotBytes. Raft's own trigger counts
// entries, and one entry may hold a single record or a whole batch, so
// without this a log of large batches would rarely snapshot and every
// restart would replay it.
func (l *Log) snapshotBySize() {
	t := time.NewTicker(snapshotCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if l.sinceSnapshot.Load() < l.cfg.SnapshotBytes || l.fsm.replaying.Load() {
			continue
		}
		err := l.raft.Snapshot().Error()
		switch {
		case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):

		default:
			// A configuration change still applying, or the store failing:
			// the count stays, so the next tick tries again.
			l.logger.Warn("cluster: snapshot by size", "err", err)
		}
	}
}

// applied counts an applied entry's bytes towards the next snapshot.
func (l *Log) applied(n int) { l.sinceSnapshot.Add(int64(n)) }

// snapshotTaken restarts the count; the FSM calls it from Snapshot.
func (l *Log) snapshotTaken() { l.sinceSnapshot.Store(0) }
