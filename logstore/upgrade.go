package logstore

import (
	"fmt"
	"os"
	"slices"
)

// upgradeActive gives the log an active segment of the format it writes
// (l.lay) when the active one is older: Open finds one left by an older
// binary, or TruncateFrom cuts into one. Every queued frame is encoded in
// l.lay, so no append is flushed before this has run.
//
// An active segment that holds records is sealed and the next one started,
// as on a roll. An empty one keeps its base: its store is replaced by a
// header of the new format (written to "<base>.store.tmp", renamed over the
// store, so a crash leaves the old header or the new one, and Open rebuilds
// the active index either way) and it gets a new index file (readers may
// still be in the old one's mapping). Caller holds flushMu, or is Open.
func (l *Log) upgradeActive() error {
	segs := l.segs.Load().segs
	old := segs[len(segs)-1]
	if old.lay == l.lay {
		return nil
	}
	if old.count > 0 {
		if _, err := l.roll(old); err != nil {
			return fmt.Errorf("logstore: seal segment %d of format version %d: %w", old.base, old.lay.version, err)
		}
		l.logger.Info("logstore: sealed a segment of an older format", "segment", old.base, "version", old.lay.version, "records", old.count)
		return nil
	}
	tmp := old.storePath + ".tmp"
	if err := writeFileSync(tmp, fileHeader(storeMagic, old.base, l.lay.version)); err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	if err := os.Rename(tmp, old.storePath); err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	if err := os.Remove(old.indexPath); err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("logstore: fsync %s: %w", l.dir, err)
	}
	s, err := openActive(l.dir, old.base, l.lay, l.cfg.MaxSegmentBytes, maxRecordLimit, l.cfg.timeEvery, l.logger)
	if err != nil {
		return fmt.Errorf("logstore: reopen segment %d: %w", old.base, err)
	}
	if err := l.syncDir(); err != nil { // the new index file
		s.release()
		return fmt.Errorf("logstore: fsync %s: %w", l.dir, err)
	}
	l.segs.Store(&segmentSet{segs: append(slices.Clone(segs[:len(segs)-1]), s)})
	old.release()
	l.logger.Info("logstore: rewrote an empty segment in the current format", "segment", old.base, "version", l.lay.version)
	return nil
}
