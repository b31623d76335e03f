package logstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// TruncateBefore deletes whole segments whose records are all below offset.
// The active segment is never deleted.
func (l *Log) TruncateBefore(offset uint64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.closed.Load() {
		return ErrClosed
	}
	segs := l.segs.Load().segs
	k := 0
	for k < len(segs)-1 && segs[k+1].base <= offset {
		k++
	}
	return l.removeOldest(k)
}

// EnforceRetention applies RetentionBytes and RetentionAge now (it also runs
// on every roll and every minute).
func (l *Log) EnforceRetention() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.closed.Load() {
		return ErrClosed
	}
	return l.retain()
}

// SetRetention replaces RetentionBytes and RetentionAge (0 turns that
// measure off) and applies them at once, as a topic's settings change.
func (l *Log) SetRetention(bytes int64, age time.Duration) error {
	if bytes < 0 || age < 0 {
		return fmt.Errorf("logstore: negative retention %d bytes, %v", bytes, age)
	}
	// closeMu first, as Close takes them: a loop started here is one
	// Close waits for.
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.closed.Load() || l.bg.Err() != nil {
		return ErrClosed
	}
	l.cfg.RetentionBytes, l.cfg.RetentionAge = bytes, age
	if !l.retaining && (bytes > 0 || age > 0) {
		l.retaining = true
		l.wg.Go(func() { l.retentionLoop(l.bg) })
	}
	return l.retain()
}

// retain deletes the oldest sealed segments that retention no longer keeps.
// Caller holds flushMu (or is Open, before the log is shared).
func (l *Log) retain() error {
	if l.cfg.RetentionBytes <= 0 && l.cfg.RetentionAge <= 0 {
		return nil
	}
	segs := l.segs.Load().segs
	total := l.sizeBytes.Load()
	cutoff := l.cfg.Now().Add(-l.cfg.RetentionAge).UnixNano()
	k := 0
	for ; k < len(segs)-1; k++ {
		s := segs[k]
		overSize := l.cfg.RetentionBytes > 0 && total > l.cfg.RetentionBytes
		tooOld := l.cfg.RetentionAge > 0 && s.newest != math.MaxInt64 && s.newest < cutoff
		if !overSize && !tooOld {
			break
		}
		total -= s.size
	}
	return l.removeOldest(k)
}

// removeOldest deletes the k oldest segments: unpublish, remove the store
// then the index (open treats an index without a store as half deleted),
// fsync the directory, and drop the log's reference (readers still inside
// finish first). Caller holds flushMu.
func (l *Log) removeOldest(k int) error {
	if k == 0 {
		return nil
	}
	segs := l.segs.Load().segs
	gone := segs[:k]
	l.segs.Store(&segmentSet{segs: slices.Clone(segs[k:])})
	var errs []error
	for _, s := range gone {
		l.sizeBytes.Add(-s.size)
		if err := s.removeFiles(); err != nil {
			errs = append(errs, err)
		}
		l.logger.Info("logstore: deleted segment", "base", s.base, "records", s.count, "bytes", s.size)
		s.release()
	}
	if err := l.syncDir(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("logstore: deleting segments: %w", err)
	}
	return nil
}

func (l *Log) retentionLoop(ctx context.Context) {
	t := time.NewTicker(retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.flushMu.Lock()
		if err := l.retain(); err != nil {
			l.logger.Error("logstore: retention failed", "err", err)
		}
		l.flushMu.Unlock()
	}
}
