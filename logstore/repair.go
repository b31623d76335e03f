package logstore

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotDamaged is returned by Repair when the frame it was to replace
// reads back whole: there is nothing to repair.
var ErrNotDamaged = errors.New("logstore: the record is not damaged")

// Repair rewrites, in place, the frame of the record at rec.Offset from
// rec, another copy of that record (a peer's: in a cluster a record's
// offset, time, key, headers and value are the same on every node, and so
// are its frame's bytes). It only replaces bytes that are wrong: the stored
// frame must fail its checks, and rec must encode to exactly the frame the
// index gives (v1: its payload length; v2: its extent, and the damaged
// frame's own length when that is consistent with it), so no other record
// moves. The new frame is
// checked, written over the old one with one pwrite, and fdatasynced. A
// hard link to the segment (a snapshot's) is the same file, so it is
// repaired too. A reader that reads the frame while it is written sees
// the damage a moment longer, never a wrong record: the CRC covers it.
func (l *Log) Repair(rec Record) error {
	next, set, _ := l.view()
	if rec.Offset < set.segs[0].base || rec.Offset >= next {
		return &RangeError{Offset: rec.Offset, Lowest: set.segs[0].base, Next: next}
	}
	s := set.segs[set.holding(rec.Offset)]
	if !s.acquire() {
		return fmt.Errorf("logstore: repair %d: its segment was deleted meanwhile", rec.Offset)
	}
	defer s.release()
	i := rec.Offset - s.base
	visCount, visEnd := s.visible()
	if i >= min(s.indexEntries(), visCount) {
		return corrupt(s.indexPath, 0, "offset %d is not in this segment's index", rec.Offset)
	}
	pos, size, plen := s.extent(i, visCount, visEnd)
	if pos < fileHeaderSize || size < s.lay.minFrame || pos+size > visEnd {
		// The index is what is wrong (Open rebuilds a sealed index that
		// does not check out); a record from elsewhere cannot fix it.
		return corrupt(s.indexPath, s.entryByte(i), "entry for offset %d points at store bytes [%d, %d), outside the store", rec.Offset, pos, pos+size)
	}
	old := make([]byte, size)
	if _, err := s.store.ReadAt(old, pos); err != nil {
		return fmt.Errorf("logstore: repair %d: read %s: %w", rec.Offset, s.storePath, err)
	}
	if h, _, err := s.lay.decodeFrame(old, rec.Offset, maxRecordLimit); err == nil && h.size() == size {
		return ErrNotDamaged
	}
	if rec.Time.IsZero() {
		return fmt.Errorf("logstore: repair %d: the replacement has no time", rec.Offset)
	}
	// A v1 entry gives the payload length. A v2 entry gives only the
	// frame's size, which the replacement must fill exactly; the damaged
	// frame's own length is used too when it is consistent with that size.
	n := payloadSize(&rec)
	if h, err := s.lay.parseFrameHeader(old, maxRecordLimit); plen < 0 && err == nil && h.size() == size {
		plen = h.valueLen
	}
	if (plen >= 0 && n != plen) || n > s.lay.maxPayload || s.lay.frameSize(n) != size {
		return fmt.Errorf("logstore: repair %d: the replacement's payload has %d bytes, the stored frame %d bytes: not the same record", rec.Offset, n, size)
	}
	frame := s.lay.appendFrame(nil, rec.Offset, rec.Time.UnixNano(), &rec)
	if _, _, err := s.lay.decodeFrame(frame, rec.Offset, maxRecordLimit); err != nil || int64(len(frame)) != size {
		return fmt.Errorf("internal: repair frame for %d: %v", rec.Offset, err)
	}
	// The segment's own descriptor may be read-only (sealed segments).
	f, err := os.OpenFile(s.storePath, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("logstore: repair %d: %w", rec.Offset, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(frame, pos); err != nil {
		return fmt.Errorf("logstore: repair %d: write %s at byte %d: %w", rec.Offset, s.storePath, pos, err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("logstore: repair %d: fdatasync %s: %w", rec.Offset, s.storePath, err)
	}
	l.logger.Warn("logstore: repaired a damaged record from another copy", "offset", rec.Offset, "store", s.storePath, "byte", pos)
	return nil
}
