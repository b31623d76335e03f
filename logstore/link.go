package logstore

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LinkedFile is one store file that Link put in a directory: its name there
// and its size, which never changes (the file is sealed).
type LinkedFile struct {
	Name string
	Size int64
}

// Link seals the active segment if it holds records, makes every sealed
// segment durable, and hard-links their store files into dir: the files,
// in order, are exactly the stream Reader would give now (records [lowest,
// next)), so they can stand for a snapshot of the log without a copy.
//
// Sealed segments are never written again: retention, TruncateBefore and
// Reset only remove the log's own names for them and Restore writes new
// files, so the linked bytes stay as they are for as long as the links
// exist. Only a TruncateFrom below next would cut a linked file; the caller
// must not do that while it keeps the links. When no segment is sealed the
// active one is linked for its 32-byte header, which no operation changes.
// The caller fsyncs dir.
//
// Each Link starts a new segment, so calling it more often than segments
// fill makes smaller segments.
func (l *Log) Link(dir string) (lowest, next uint64, files []LinkedFile, err error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.closed.Load() {
		return 0, 0, nil, ErrClosed
	}
	if l.flushErr != nil {
		return 0, 0, nil, l.flushErr
	}
	segs := l.segs.Load().segs
	if active := segs[len(segs)-1]; active.count > 0 {
		if _, err := l.roll(active); err != nil {
			return 0, 0, nil, l.fail("seal", err)
		}
		segs = l.segs.Load().segs
	}
	if err := l.syncSealed(segs); err != nil {
		return 0, 0, nil, l.fail("fdatasync", err)
	}
	sealed := segs[:len(segs)-1]
	if len(sealed) == 0 {
		sealed = segs
	}
	for _, s := range sealed {
		name := filepath.Base(s.storePath)
		if err := os.Link(s.storePath, filepath.Join(dir, name)); err != nil {
			return 0, 0, nil, fmt.Errorf("logstore: link: %w", err)
		}
		size := s.size
		if !s.sealed {
			size = fileHeaderSize
		}
		files = append(files, LinkedFile{Name: name, Size: size})
	}
	return segs[0].base, segs[len(segs)-1].base, files, nil
}

// syncSealed fdatasyncs the sealed segments that were sealed without it
// (SyncNever). Caller holds flushMu.
func (l *Log) syncSealed(segs []*segment) error {
	for _, s := range segs {
		if !s.sealed || !s.unsynced {
			continue
		}
		if err := unix.Fdatasync(int(s.store.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", s.storePath, err)
		}
		if err := s.index.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", s.indexPath, err)
		}
		s.unsynced = false
	}
	return nil
}
