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

// defaultSnapshotThreshold is Config.SnapshotThreshold's default.
const defaultSnapshotThreshold = 1 << 20

// defaultTrailingBytes is Config.TrailingBytes's default.
const defaultTrailingBytes = 64 << 20

// minTrailingLogs keeps a few entries behind every snapshot however large
// they are, so a follower a moment behind still gets entries.
const minTrailingLogs = 64

// snapshotCheckEvery is how often snapshotBySize looks at the count.
const snapshotCheckEvery = 250 * time.Millisecond

// snapshotBySize takes a snapshot whenever the entries applied since the
// latest one add up to Config.SnapshotBytes. Raft's own trigger counts
// entries, and one entry may hold a single record or a whole batch, so
// without this a log of large batches would rarely snapshot and every
// restart would replay it. For the same reason it sizes raft's
// TrailingLogs, which is a count too, from Config.TrailingBytes.
func (l *Log) snapshotBySize() {
	t := time.NewTicker(snapshotCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if l.sinceSnapshot.Load() < l.cfg.SnapshotBytes {
			continue
		}
		l.sizeTrailingLogs()
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

// sizeTrailingLogs sets raft's TrailingLogs to about Config.TrailingBytes
// of entries of the size applied since the latest snapshot, within
// [minTrailingLogs, Config.TrailingLogs].
func (l *Log) sizeTrailingLogs() {
	n, size := l.entriesSinceSnapshot.Load(), l.sinceSnapshot.Load()
	if l.cfg.TrailingBytes <= 0 || n == 0 || size == 0 {
		return
	}
	want := uint64(max(l.cfg.TrailingBytes/(size/n), minTrailingLogs))
	want = min(want, l.trailingLogs)
	if want == l.raft.ReloadableConfig().TrailingLogs {
		return
	}
	l.reloadRaft(func(rc *raft.ReloadableConfig) { rc.TrailingLogs = want })
}

// applied counts an applied entry towards the next snapshot.
func (l *Log) applied(bytes int) {
	l.sinceSnapshot.Add(int64(bytes))
	l.entriesSinceSnapshot.Add(1)
}

// snapshotTaken restarts the count; the FSM calls it from Snapshot.
func (l *Log) snapshotTaken() {
	l.sinceSnapshot.Store(0)
	l.entriesSinceSnapshot.Store(0)
}
