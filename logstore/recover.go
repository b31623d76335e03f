package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// window reads a file through a sliding buffer so recovery can scan a large
// store without holding it all in memory.
type window struct {
	f    *os.File
	size int64
	buf  []byte
	pos  int64 // file position of buf[0]
}

const windowBytes = 4 << 20

// get returns the bytes [pos, pos+n), or fewer if the file ends first.
func (w *window) get(pos int64, n int) ([]byte, error) {
	if pos >= w.size {
		return nil, nil
	}
	n = int(min(int64(n), w.size-pos))
	if pos >= w.pos && pos+int64(n) <= w.pos+int64(len(w.buf)) {
		return w.buf[pos-w.pos : pos-w.pos+int64(n)], nil
	}
	want := int(min(max(int64(n), windowBytes), w.size-pos))
	if cap(w.buf) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	if _, err := w.f.ReadAt(w.buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	w.pos = pos
	return w.buf[:n], nil
}

type scanEntry struct {
	pos      int64
	valueLen int
}

// scanResult is what a scan of a store found.
type scanResult struct {
	entries []scanEntry
	times   timeSamples // time samples (appendSample)
	end     int64       // end of the last valid frame
	newest  int64
	badPos  int64 // -1 when every byte up to the file end is valid frames
	badWhy  error
	follows int64 // position of a valid later frame after badPos, or -1
}

// scanStore walks the frames of a store from its header on. It stops at the
// first frame that is not valid and then looks for any valid frame after it,
// which tells a torn tail (nothing valid follows) from damage in the middle.
// It samples times every timeEvery bytes (appendSample).
func scanStore(fl *layout, f *os.File, size int64, base uint64, maxValue int, timeEvery int64) (scanResult, error) {
	w := &window{f: f, size: size}
	r := scanResult{end: fileHeaderSize, newest: math.MinInt64, badPos: -1, follows: -1}
	pos, off := int64(fileHeaderSize), base
	for pos < size {
		b, err := w.get(pos, fl.headerSize)
		if err != nil {
			return r, err
		}
		h, err := fl.parseFrameHeader(b, maxValue)
		if err == nil {
			b, err = w.get(pos, int(h.size()))
			if err != nil {
				return r, err
			}
			h, _, err = fl.decodeFrame(b, off, maxValue)
		}
		if err != nil {
			r.badPos, r.badWhy = pos, err
			r.follows, err = findValidFrame(fl, w, pos+fl.align, off, maxValue)
			return r, err
		}
		r.times, _ = appendSample(r.times, timeEvery, uint64(len(r.entries)), pos, h.unixNano)
		r.entries = append(r.entries, scanEntry{pos: pos, valueLen: h.valueLen})
		r.newest = h.unixNano
		pos += h.size()
		off++
	}
	r.end = pos
	return r, nil
}

// findValidFrame looks at every aligned position from pos on for a frame that
// passes every check and holds an offset at or after off (no further on
// than the store could hold records).
func findValidFrame(fl *layout, w *window, pos int64, off uint64, maxValue int) (int64, error) {
	for ; pos+int64(fl.headerSize) <= w.size; pos += fl.align {
		b, err := w.get(pos, fl.headerSize)
		if err != nil {
			return -1, err
		}
		h, err := fl.parseFrameHeader(b, maxValue)
		if err != nil {
			continue
		}
		at, ok := fl.offsetFrom(h, off)
		if !ok || at-off > uint64(w.size/fl.minFrame) || pos+h.size() > w.size {
			continue
		}
		if b, err = w.get(pos, int(h.size())); err != nil {
			return -1, err
		}
		if _, _, err := fl.decodeFrame(b, at, maxValue); err == nil {
			return pos, nil
		}
	}
	return -1, nil
}

// openActive opens the newest segment and recovers it: every frame is
// checked, a torn tail is cut off, damage before the tail is ErrCorrupt, and
// the index is rebuilt from the frames (its old contents are never trusted).
// A store cut short while it was being created gets the header of format
// fl, the log's.
func openActive(dir string, base uint64, fl *layout, maxSegment int64, maxValue int, timeEvery int64, logger *slog.Logger) (_ *segment, err error) {
	storePath, indexPath := segmentPaths(dir, base)
	s := &segment{base: base, storePath: storePath, indexPath: indexPath}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.store, err = os.OpenFile(storePath, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	size, err := fileSize(s.store)
	if err != nil {
		return nil, err
	}
	head := make([]byte, fileHeaderSize)
	n, err := s.store.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var herr error
	if s.lay, herr = checkFileHeader(head[:n], storeMagic, base); herr != nil {
		// A crash while the segment was being created leaves a short or
		// zero header (or the start of a right one) and no records:
		// write the header again.
		v1, v2 := fileHeader(storeMagic, base, 1), fileHeader(storeMagic, base, 2)
		if size > fileHeaderSize || (!allZero(head[:n]) && !bytes.Equal(head[:n], v1[:n]) && !bytes.Equal(head[:n], v2[:n])) {
			return nil, corrupt(storePath, 0, "%v", herr)
		}
		logger.Warn("logstore: rewriting the header of a new segment cut short by a crash", "file", storePath, "bytes", size)
		s.lay = fl
		if _, err := s.store.WriteAt(fileHeader(storeMagic, base, fl.version), 0); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(int(s.store.Fd())); err != nil {
			return nil, fmt.Errorf("fdatasync %s: %w", storePath, err)
		}
		size = fileHeaderSize
	}
	r, err := scanStore(s.lay, s.store, size, base, maxValue, timeEvery)
	if err != nil {
		return nil, fmt.Errorf("logstore: scan %s: %w", storePath, err)
	}
	if r.badPos >= 0 {
		if r.follows >= 0 {
			return nil, corrupt(storePath, r.badPos, "%v; a valid record follows at byte %d, so this is not a torn tail", r.badWhy, r.follows)
		}
		broken := storePath + ".broken"
		logger.Warn("logstore: truncating torn tail of the active segment",
			"file", storePath, "pos", r.badPos, "dropped_bytes", size-r.badPos, "reason", r.badWhy.Error(),
			"records_kept", len(r.entries), "copy", broken)
		if err := saveBroken(s.store, r.badPos, size, broken); err != nil {
			return nil, fmt.Errorf("logstore: keeping the torn tail of %s: %w", storePath, err)
		}
		if err := s.store.Truncate(r.badPos); err != nil {
			return nil, fmt.Errorf("logstore: truncate torn tail of %s: %w", storePath, err)
		}
		if err := s.store.Sync(); err != nil {
			return nil, fmt.Errorf("logstore: fsync %s: %w", storePath, err)
		}
		r.end = r.badPos
	}
	s.size = r.end
	s.count = uint64(len(r.entries))
	s.newest = r.newest
	if err := s.createIndex(maxSegment, s.count); err != nil {
		return nil, err
	}
	if err := s.ensureIndex(s.count + 1); err != nil {
		return nil, err
	}
	for i, e := range r.entries {
		s.putEntry(uint64(i), e.pos, e.valueLen)
	}
	// The active segment's samples live in memory until it is sealed; a
	// time index file for it is stale (a crash between a seal and the
	// next segment's creation, or during a truncation).
	s.setTimes(r.times)
	if err := removeTimeIndex(storePath); err != nil {
		return nil, err
	}
	s.setVisible(s.count, s.size)
	s.refs.Store(1)
	return s, nil
}

// rebuildSealedIndex replaces a sealed segment's damaged or missing index by
// scanning its store strictly: every byte must be valid frames.
func rebuildSealedIndex(s *segment, maxValue int, cause error, logger *slog.Logger) error {
	r, err := scanStore(s.lay, s.store, s.size, s.base, maxValue, timeIndexEvery)
	if err != nil {
		return fmt.Errorf("logstore: scan %s: %w", s.storePath, err)
	}
	if r.badPos >= 0 {
		if keepsIndex(s, r, cause) {
			// As with a v1 index, which has the length: the damage is
			// reported when the record is read.
			logger.Warn("logstore: the last record of a sealed segment is damaged; reads of it will fail", "file", s.storePath, "pos", r.badPos, "reason", r.badWhy.Error())
			return nil
		}
		return corrupt(s.storePath, r.badPos, "sealed segment: %v", r.badWhy)
	}
	logger.Warn("logstore: rebuilt the index of a sealed segment", "file", s.indexPath, "cause", cause.Error(), "records", len(r.entries))
	if s.idx != nil {
		unix.Munmap(s.idx)
		s.idx = nil
	}
	if s.index != nil {
		s.index.Close()
		s.index = nil
	}
	buf := make([]byte, fileHeaderSize+int64(len(r.entries))*s.lay.entrySize)
	copy(buf, fileHeader(indexMagic, s.base, s.lay.version))
	for i, e := range r.entries {
		putEntry(s.lay, buf, uint64(i), e.pos, e.valueLen)
	}
	tmp := s.indexPath + ".tmp"
	if err := writeFileSync(tmp, buf); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.indexPath); err != nil {
		return err
	}
	if err := syncDir(s.indexPath); err != nil {
		return err
	}
	return s.mapSealedIndex(maxValue)
}

// keepsIndex reports whether a sealed v2 index whose last frame did not
// check out (cause) is right after all: the scan r of its store found every
// frame before that one valid, at the positions the index gives, and the
// damage at that frame. s.count and the mapping are the index's.
func keepsIndex(s *segment, r scanResult, cause error) bool {
	var lf *lastFrameError
	if !errors.As(cause, &lf) || lf.pos != r.badPos || uint64(len(r.entries))+1 != s.count {
		return false
	}
	for i, e := range r.entries {
		if s.entryPos(uint64(i)) != e.pos {
			return false
		}
	}
	return true
}

// saveBroken keeps the bytes recovery cuts off, for forensics, in a file
// Open ignores (it is overwritten by the next repair of the same segment).
func saveBroken(f *os.File, from, to int64, path string) error {
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := writeFileSync(path, b); err != nil {
		return err
	}
	return syncDir(path)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs the directory holding path, making creates, renames and
// removes in it durable.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
