package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// resetMarker is the file Reset writes before it deletes anything; doc.go
// ("Truncation and reset") says what Open does with it.
const resetMarker = "reset"

// resetHeader is the reset marker's contents. It stays a version 1 header
// whatever the segments' format: a binary that knows only version 1 then
// still finishes a reset begun by this one rather than take the marker
// for a torn one and open a half-deleted log.
func resetHeader(next uint64) []byte { return fileHeader(storeMagic, next, 1) }

// TruncateFrom deletes every record at offset >= from, so the next append
// gets offset from. from must satisfy lowest <= from <= next (Bounds);
// otherwise it returns a *RangeError. from == next is a no-op.
// When it returns nil the truncation is durable (policy SyncAlways and SyncInterval;
// under SyncNever as durable as the page cache), and a crash at any point
// during it leaves, after Open, the log with every record below from intact and
// either all, some suffix-prefix, or none of the records >= from: i.e. Open
// sees a prefix of the old log that is at least [lowest, from).
//
// Appends still queued when TruncateFrom takes the writer's lock are written
// and acknowledged first, as if they had returned just before it was called;
// next and the range check then include them, and being at or past the old
// next they are among the records deleted. Appends that queue while it runs
// get offsets from from on and are written after it.
//
// If the record just before from is damaged on disk, TruncateFrom returns
// its *CorruptError and changes nothing. A failed file operation puts the log
// in its failed state (ErrFailed) and reopening it gives a prefix as above.
func (l *Log) TruncateFrom(from uint64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	return l.truncateFrom(from)
}

// truncateFrom is TruncateFrom; caller holds flushMu.
func (l *Log) truncateFrom(from uint64) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if l.flushErr != nil {
		return l.flushErr
	}
	lowest := l.segs.Load().segs[0].base
	l.mu.Lock()
	end := l.assigned // flushed records plus queued ones: assigned only grows until takeQueued
	l.mu.Unlock()
	if from < lowest || from > end {
		return &RangeError{Offset: from, Lowest: lowest, Next: end}
	}
	if from == end {
		return nil
	}
	// Where the cut goes is checked before anything changes when the record
	// before it is on disk already: a damaged record or index entry there
	// must refuse the truncation, not cut the store at a wrong byte.
	var c cutPoint
	var err error
	if from <= l.durable {
		if c, err = l.findCut(from); err != nil {
			return err
		}
	}
	if err := l.takeQueued(from); err != nil {
		return err
	}
	if c.seg == nil {
		// The record before from was queued and has just been written.
		if c, err = l.findCut(from); err != nil {
			return l.fail("truncate", err)
		}
	}
	if err := l.cut(from, c); err != nil {
		return l.fail("truncate", err)
	}
	return nil
}

// Reset deletes every record and leaves an empty log whose next append gets
// offset next (Bounds() == next, next afterwards). Any next is allowed, lower or
// higher than the current one. A crash during Reset leaves after Open either
// the old log, a log holding some contiguous part of the old records, or the
// new empty log starting at next — never records at wrong offsets.
//
// (In fact Open never sees the middle state: Reset first makes a marker file
// durable, and Open finishes a reset whose marker it finds. So a crash leaves
// the old log or the new one.) Queued appends are handled as by TruncateFrom:
// written and acknowledged first, then deleted with the rest. A failed file
// operation puts the log in its failed state; reopening it gives the old or
// the new log.
func (l *Log) Reset(next uint64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	return l.resetTo(next)
}

// resetTo is Reset; caller holds flushMu.
func (l *Log) resetTo(next uint64) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if l.flushErr != nil {
		return l.flushErr
	}
	if err := l.takeQueued(next); err != nil {
		return err
	}
	l.durable = next
	if err := l.reset(next); err != nil {
		return l.fail("reset", err)
	}
	return nil
}

// takeQueued writes the appends queued so far, as any flush would, and
// makes the next append get offset next. Appends that queue from now on
// carry offsets from next and wait for the flush lock the caller holds.
// Caller holds flushMu.
func (l *Log) takeQueued(next uint64) error {
	l.mu.Lock()
	b, w := l.detachPending()
	l.assigned = next
	l.mu.Unlock()
	// No retention in this flush: it could delete segments the caller is
	// about to work on.
	return l.flushDetached(b, w, l.cfg.Sync == SyncAlways, false)
}

// cutPoint says where TruncateFrom cuts: in seg, after its first keep
// records, at store byte pos.
type cutPoint struct {
	seg    *segment // the segment holding offset from, or starting at it
	keep   uint64   // records of seg below from
	pos    int64    // store byte where those records end
	newest int64    // unix nanos of the last kept record (age retention)
}

// findCut locates from. The end of the kept records is taken from the record
// before from, read and checked in full (CRC, offset, index entry), so a
// damaged index cannot make the store be cut at the wrong byte: too early
// loses kept records, too late keeps old frames a later recovery scan could
// accept. Caller holds flushMu.
func (l *Log) findCut(from uint64) (cutPoint, error) {
	segs := l.segs.Load().segs
	i := len(segs) - 1
	for i > 0 && segs[i].base > from {
		i--
	}
	s := segs[i]
	c := cutPoint{seg: s, keep: from - s.base, pos: fileHeaderSize, newest: math.MinInt64}
	if c.keep == 0 {
		return c, nil
	}
	recs, err := s.read(from-1, 1, 0, nil, from, maxRecordLimit, nil)
	if err != nil {
		return cutPoint{}, fmt.Errorf("logstore: truncate from %d: the record before: %w", from, err)
	}
	visCount, visEnd := s.visible()
	pos, size, _ := s.extent(c.keep-1, visCount, visEnd)
	c.pos = pos + size
	c.newest = recs[0].Time.UnixNano()
	return c, nil
}

// cut deletes the records from `from` on, at c. Caller holds flushMu.
func (l *Log) cut(from uint64, c cutPoint) error {
	segs := l.segs.Load().segs
	k := slices.Index(segs, c.seg)
	if k < 0 {
		return errors.New("internal: the segment to cut is no longer in the log")
	}
	later := segs[k+1:]
	// Readers stop seeing the records before any of their bytes change;
	// reads already under way notice the epoch moved and look again.
	l.durable = from
	l.publish(from, slices.Clone(segs[:k+1]), func() {
		// The old object stays published until reactivate replaces it;
		// snapshot streams size their last part by its end.
		c.seg.setVisible(c.keep, c.pos)
	})
	for _, s := range later {
		l.sizeBytes.Add(-s.size)
		s.release() // readers still inside keep the files open
	}
	// Newest first, each removal durable before the next, so that a crash
	// leaves a prefix: an older segment is never gone while a newer stays.
	for j := len(later) - 1; j >= 0; j-- {
		s := later[j]
		if err := removeTimeIndex(s.storePath); err != nil {
			return err
		}
		if err := l.stepf("remove store %d", s.base); err != nil {
			return err
		}
		if err := os.Remove(s.storePath); err != nil {
			return err
		}
		if err := l.stepf("remove index %d", s.base); err != nil {
			return err
		}
		if err := os.Remove(s.indexPath); err != nil {
			return err
		}
		if err := os.Remove(s.storePath + ".broken"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := l.syncDir(); err != nil {
			return fmt.Errorf("fsync %s: %w", l.dir, err)
		}
	}
	s, err := l.reactivate(c)
	if err != nil {
		return err
	}
	l.sizeBytes.Add(s.size - c.seg.size)
	// Same offsets, new segment object: no epoch change is needed.
	l.segs.Store(&segmentSet{segs: append(slices.Clone(segs[:k]), s)})
	c.seg.release()
	l.logger.Info("logstore: truncated", "from", from, "segments_deleted", len(later), "segment", s.base, "records_kept", s.count)
	// A cut into a segment of an older format: appends go to one of the
	// log's format.
	return l.upgradeActive()
}

// reactivate returns c.seg, sealed or active, as a new active segment object
// holding its first c.keep records. The store is cut first: it is what
// recovery trusts for the newest segment (the active index is always
// rebuilt from it), so once the cut is durable no old frame can come back.
// The index gets a new file: readers of the old object may still be in the
// old one's mapping, and truncating a mapped file would turn their reads
// into SIGBUS. The old file lives on, unlinked, until they are done.
func (l *Log) reactivate(c cutPoint) (_ *segment, err error) {
	old := c.seg
	s := &segment{base: old.base, storePath: old.storePath, indexPath: old.indexPath, lay: old.lay, size: c.pos, count: c.keep, newest: c.newest}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.store, err = os.OpenFile(s.storePath, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	// The time index goes before the cut: it would describe records the
	// cut removes (Open also removes the active segment's).
	s.setTimes(keptTimes(old, c.keep))
	if err = removeTimeIndex(s.storePath); err != nil {
		return nil, err
	}
	if err = l.stepf("truncate store %d", s.base); err != nil {
		return nil, err
	}
	if err = s.store.Truncate(c.pos); err != nil {
		return nil, fmt.Errorf("truncate %s: %w", s.storePath, err)
	}
	if l.cfg.Sync == SyncNever {
		s.dirty = true // Close and Sync owe it an fdatasync
	} else if err = s.store.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", s.storePath, err)
	}
	if err = l.stepf("remove index %d", s.base); err != nil {
		return nil, err
	}
	if err = os.Remove(s.indexPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err = l.stepf("create index %d", s.base); err != nil {
		return nil, err
	}
	if err = s.createIndex(l.cfg.MaxSegmentBytes, c.keep); err != nil {
		return nil, err
	}
	o := s.entryByte(c.keep)
	copy(s.idx[fileHeaderSize:o], old.idx[fileHeaderSize:o])
	if err = l.syncDir(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	s.setVisible(s.count, s.size)
	s.refs.Store(1)
	return s, nil
}

// reset replaces every segment by an empty one based at next. Caller holds flushMu.
func (l *Log) reset(next uint64) error {
	if err := l.stepf("write reset marker"); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(l.dir, resetMarker), resetHeader(next)); err != nil {
		return err
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	// From here on the reset is decided: a crash makes Open finish it.
	if err := l.finishReset(next); err != nil {
		return err
	}
	s, err := openActive(l.dir, next, l.lay, l.cfg.MaxSegmentBytes, maxRecordLimit, l.cfg.timeEvery, l.logger)
	if err != nil {
		return err
	}
	if err := l.syncDir(); err != nil { // the new index file
		s.release()
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	old := l.segs.Load().segs
	l.publish(next, []*segment{s}, nil)
	l.sizeBytes.Store(s.size)
	for _, o := range old {
		o.release() // readers still inside keep the unlinked files open
	}
	l.broadcast() // next may have moved up
	l.logger.Info("logstore: reset", "next", next, "segments_deleted", len(old))
	return nil
}

// finishReset deletes every segment file, oldest first, creates the empty
// store of the segment based at next and then removes the reset marker,
// fsyncing the directory after each stage. Reset runs it after writing the
// marker, Open when it finds a valid one.
func (l *Log) finishReset(next uint64) error {
	entries, err := os.ReadDir(l.dir) // sorted by name, so by base
	if err != nil {
		return err
	}
	for _, e := range entries {
		stem, ext, _ := strings.Cut(e.Name(), ".")
		if len(stem) != 20 {
			continue
		}
		if _, err := strconv.ParseUint(stem, 10, 64); err != nil {
			continue
		}
		switch ext {
		case "store", "index", "store.broken", "index.tmp", "store.tmp", "timeindex", "timeindex.tmp":
		default:
			continue
		}
		if err := l.stepf("remove %s", e.Name()); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
			return err
		}
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	if err := l.stepf("create store %d", next); err != nil {
		return err
	}
	storePath, _ := segmentPaths(l.dir, next)
	if err := writeFileSync(storePath, fileHeader(storeMagic, next, l.lay.version)); err != nil {
		return err
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	if err := l.stepf("remove reset marker"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(l.dir, resetMarker)); err != nil {
		return err
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	return nil
}

// recoverReset handles a reset marker found by Open: a valid one (a store
// header naming the new base) means a Reset was decided and maybe half done,
// so it is finished; anything else is a marker torn by a crash before it was
// durable, when Reset had not deleted anything yet, so it is removed.
func (l *Log) recoverReset() error {
	path := filepath.Join(l.dir, resetMarker)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	b := make([]byte, fileHeaderSize+1)
	n, err := io.ReadFull(f, b)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	b = b[:n]
	if len(b) == fileHeaderSize {
		base := binary.LittleEndian.Uint64(b[16:24])
		if _, err := checkFileHeader(b, storeMagic, base); err == nil {
			l.logger.Warn("logstore: finishing a reset interrupted by a crash", "dir", l.dir, "next", base)
			return l.finishReset(base)
		}
	}
	l.logger.Warn("logstore: removing a reset marker torn by a crash; the reset had not started", "file", path, "bytes", n)
	if err := os.Remove(path); err != nil {
		return err
	}
	return l.syncDir()
}

// publish replaces next and the segment set together, and runs also (if
// set) with them, inside an odd epoch (see Log.epoch). Caller holds flushMu.
func (l *Log) publish(next uint64, segs []*segment, also func()) {
	l.epoch.Add(1)
	l.segs.Store(&segmentSet{segs: segs})
	l.next.Store(next)
	if also != nil {
		also()
	}
	l.epoch.Add(1)
}

// stepf calls the test hook before a file operation of a truncation.
func (l *Log) stepf(format string, args ...any) error {
	if l.step == nil {
		return nil
	}
	return l.step(fmt.Sprintf(format, args...))
}
