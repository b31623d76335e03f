package logstore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// wrap them with the segment file, byte position or offsets involved.
var (
	// ErrOutOfRange is returned by Read, ReadBatch and the snapshot reader for an
	// offset outside [lowest, next): never written yet, or already deleted by
	// retention, TruncateBefore, TruncateFrom or Reset; also by TruncateFrom for a
	// cut point outside [lowest, next]. The concrete error is a *RangeError.
	ErrOutOfRange = errors.New("logstore: offset out of range")
	// ErrCorrupt is returned when bytes on disk fail their checks: a record whose
	// CRC, length or offset is wrong, an index entry that points at the wrong
	// place, a damaged file header, or damage before the tail of the active
	// segment found while opening. The concrete error is a *CorruptError naming
	// the file and byte position. Corrupt records are never served.
	ErrCorrupt = errors.New("logstore: corrupt data")
	// ErrRecordTooLarge is returned by Append and AppendBatch for a value longer
	// than Config.MaxRecordBytes, before any allocation or disk work.
	ErrRecordTooLarge = errors.New("logstore: record too large")
	// ErrClosed is returned by every method called after Close, and by Wait
	// when the log is closed while it waits.
	ErrClosed = errors.New("logstore: log closed")
	// ErrFailed is returned when a write or fsync failed (disk full, I/O error).
	// The log then refuses every further append until it is reopened: after a
	// failed fsync the state of the page cache is unknown, so the log neither
	// retries the fsync nor acknowledges anything past it. Reads keep working.
	ErrFailed = errors.New("logstore: log failed, reopen it")
)

// RangeError is returned (wrapped) for offsets outside [Lowest, Next);
// errors.Is(err, ErrOutOfRange) is true. Lowest is the lowest offset still
// available, so a reader of deleted offsets knows where to resume.
type RangeError struct {
	Offset, Lowest, Next uint64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("logstore: offset %d out of range [%d, %d)", e.Offset, e.Lowest, e.Next)
}

// Is makes errors.Is(err, ErrOutOfRange) true.
func (e *RangeError) Is(target error) bool { return target == ErrOutOfRange }

// CorruptError says which file is damaged and where; errors.Is(err, ErrCorrupt) is true.
type CorruptError struct {
	Path   string // the store or index file
	Pos    int64  // byte position of the damaged frame, entry or header
	Reason string
	// Record is the offset of the record whose frame is damaged, when a
	// read found it (HasRecord): another copy of the record can repair it
	// (Log.Repair).
	Record    uint64
	HasRecord bool
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("logstore: corrupt data: %s at byte %d: %s", e.Path, e.Pos, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(path string, pos int64, format string, args ...any) error {
	return &CorruptError{Path: path, Pos: pos, Reason: fmt.Sprintf(format, args...)}
}
