package logstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// restoreSource names the stream in the errors of Restore.
const restoreSource = "snapshot stream"

// Restore replaces the log in dir with the one in r, a stream produced by
// (*Log).Reader, possibly on another machine. No Log may have dir open.
//
// Every store header and frame is checked as recovery checks them (magic,
// header CRC, dense offsets across segments, frame CRC) while the files are
// written into a fresh directory next to dir; a stream that fails a check is
// ErrCorrupt and leaves dir untouched. The index and time index of every
// segment but the last are written too, so Open does not have to rebuild
// them (it rebuilds the last one, which becomes the active segment). The new files and directory
// are fsynced and the new directory is swapped into place atomically
// (renameat2 RENAME_EXCHANGE where the file system has it).
func Restore(dir string, r io.Reader) (err error) {
	dir = filepath.Clean(dir)
	tmp := dir + ".restore"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("logstore: restore: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("logstore: restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	w := &restoreWriter{dir: tmp, in: bufio.NewReaderSize(r, 64<<10)}
	if err := w.run(); err != nil {
		w.abort()
		return err
	}
	if err := syncPath(tmp); err != nil {
		return fmt.Errorf("logstore: restore: fsync %s: %w", tmp, err)
	}
	return swapDir(tmp, dir)
}

// restoreWriter turns the snapshot stream into segment files, or, with
// discard, only checks it.
type restoreWriter struct {
	dir     string
	discard bool
	in      *bufio.Reader
	pos     int64 // bytes consumed from the stream, for errors
	seg     segmentFile
	lay     *layout // the current segment's format
	segBase uint64
	segSize int64
	entries []byte      // index entries of the current segment
	times   timeSamples // its time samples
	next    uint64      // offset the next frame must hold
	started bool
	buf     []byte
}

func (w *restoreWriter) run() error {
	w.buf = make([]byte, 32<<10)
	for {
		b, err := w.in.Peek(1)
		if errors.Is(err, io.EOF) {
			return w.finishSegment(false)
		}
		if err != nil {
			return fmt.Errorf("logstore: restore: read: %w", err)
		}
		switch {
		case b[0] == storeMagic[0]:
			if err := w.header(); err != nil {
				return err
			}
		case w.lay != nil && w.lay.startsFrame(b[0]):
			if err := w.frame(); err != nil {
				return err
			}
		case w.lay == nil:
			return corrupt(restoreSource, w.pos, "byte %#x before any store header", b[0])
		default:
			return corrupt(restoreSource, w.pos, "byte %#x starts neither a store header nor a record frame", b[0])
		}
	}
}

// read fills p from the stream; a short stream is corrupt.
func (w *restoreWriter) read(p []byte, what string) error {
	n, err := io.ReadFull(w.in, p)
	w.pos += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt(restoreSource, w.pos, "stream ends inside a %s", what)
	}
	if err != nil {
		return fmt.Errorf("logstore: restore: read: %w", err)
	}
	return nil
}

func (w *restoreWriter) header() error {
	start := w.pos
	h := make([]byte, fileHeaderSize)
	if err := w.read(h, "store header"); err != nil {
		return err
	}
	base := binary.LittleEndian.Uint64(h[16:24])
	f, err := checkFileHeader(h, storeMagic, base)
	if err != nil {
		return corrupt(restoreSource, start, "store header: %v", err)
	}
	if w.started && base != w.next {
		return corrupt(restoreSource, start, "segment starts at offset %d but the previous one ends at %d", base, w.next)
	}
	if err := w.finishSegment(true); err != nil {
		return err
	}
	storePath, _ := segmentPaths(w.dir, base)
	var out segmentFile = discardFile{}
	if !w.discard {
		if out, err = os.OpenFile(storePath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return fmt.Errorf("logstore: restore: %w", err)
		}
	}
	w.seg, w.lay, w.segBase, w.segSize, w.entries, w.times = out, f, base, fileHeaderSize, w.entries[:0], w.times[:0]
	w.next, w.started = base, true
	if _, err := out.Write(h); err != nil {
		return fmt.Errorf("logstore: restore: write %s: %w", storePath, err)
	}
	return nil
}

// frame copies one record frame, streaming its value through a fixed buffer
// so a damaged length cannot make Restore allocate it.
func (w *restoreWriter) frame() error {
	start := w.pos
	if w.seg == nil {
		return corrupt(restoreSource, start, "record frame before any store header")
	}
	h := make([]byte, w.lay.headerSize)
	if err := w.read(h, "frame header"); err != nil {
		return err
	}
	fh, err := w.lay.parseFrameHeader(h, maxRecordLimit)
	if err != nil {
		return w.recordCorrupt(corrupt(restoreSource, start, "%v", err))
	}
	if !w.lay.holds(fh, w.next) {
		return w.recordCorrupt(corrupt(restoreSource, start, "frame holds offset %d, want %d", fh.offset, w.next))
	}
	size := fh.size()
	if w.segSize+size > maxSegmentBytes {
		return corrupt(restoreSource, start, "segment %d grows past %d bytes", w.segBase, int64(maxSegmentBytes))
	}
	if _, err := w.seg.Write(h); err != nil {
		return fmt.Errorf("logstore: restore: write: %w", err)
	}
	crc := crc32.Checksum(h[:len(h)-4], castagnoli)
	left := size - int64(len(h))
	valueLeft := int64(fh.valueLen)
	for left > 0 {
		chunk := w.buf[:min(int64(len(w.buf)), left)]
		if err := w.read(chunk, "record frame"); err != nil {
			return err
		}
		if valueLeft > 0 {
			v := chunk[:min(int64(len(chunk)), valueLeft)]
			crc = crc32.Update(crc, castagnoli, v)
			valueLeft -= int64(len(v))
		}
		if _, err := w.seg.Write(chunk); err != nil {
			return fmt.Errorf("logstore: restore: write: %w", err)
		}
		left -= int64(len(chunk))
	}
	if crc != fh.crc {
		return w.recordCorrupt(corrupt(restoreSource, start, "crc mismatch: stored %08x, computed %08x", fh.crc, crc))
	}
	w.entries = appendEntry(w.lay, w.entries, w.segSize, fh.valueLen)
	w.times, _ = appendSample(w.times, timeIndexEvery, w.next-w.segBase, w.segSize, fh.unixNano)
	w.segSize += size
	w.next++
	return nil
}

// finishSegment syncs and closes the current store; sealed (not the last)
// segments also get their index written.
func (w *restoreWriter) finishSegment(sealed bool) error {
	if w.seg == nil {
		return nil
	}
	f := w.seg
	w.seg = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("logstore: restore: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("logstore: restore: %w", err)
	}
	if !sealed || w.discard {
		return nil
	}
	storePath, indexPath := segmentPaths(w.dir, w.segBase)
	idx := append(fileHeader(indexMagic, w.segBase, w.lay.version), w.entries...)
	if err := writeFileSync(indexPath, idx); err != nil {
		return fmt.Errorf("logstore: restore: %w", err)
	}
	// The stream carries no time index; the samples are rebuilt from the
	// frames on the way, as the writer takes them.
	if err := writeFileSync(timeIndexPath(storePath), encodeTimeIndex(w.segBase, w.times)); err != nil {
		return fmt.Errorf("logstore: restore: %w", err)
	}
	return nil
}

// segmentFile is where restoreWriter writes a segment's store.
type segmentFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// discardFile is the segmentFile of a stream that is only checked.
type discardFile struct{}

func (discardFile) Write(p []byte) (int, error) { return len(p), nil }
func (discardFile) Sync() error                 { return nil }
func (discardFile) Close() error                { return nil }
func (discardFile) Name() string                { return "" }

// Verify reads a stream produced by (*Log).Reader and checks it as Restore
// does (store headers, dense offsets, every frame's CRC) without writing
// anything. A stream that fails is ErrCorrupt, naming the byte position.
func Verify(r io.Reader) error {
	w := &restoreWriter{discard: true, in: bufio.NewReaderSize(r, 64<<10)}
	return w.run()
}

func (w *restoreWriter) abort() {
	if w.seg != nil {
		w.seg.Close()
		w.seg = nil
	}
}

// syncPath fsyncs a directory itself (syncDir syncs a path's parent).
func syncPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// swapDir puts tmp in place of dir and removes the old contents.
func swapDir(tmp, dir string) error {
	_, statErr := os.Stat(dir)
	switch {
	case errors.Is(statErr, os.ErrNotExist):
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("logstore: restore: %w", err)
		}
	case statErr != nil:
		return fmt.Errorf("logstore: restore: %w", statErr)
	default:
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// No atomic exchange here: move the old log aside first. A crash
			// between the two renames leaves dir missing and both copies on
			// disk, never a mix of the two.
			old := dir + ".old"
			if err := os.RemoveAll(old); err != nil {
				return fmt.Errorf("logstore: restore: %w", err)
			}
			if err := os.Rename(dir, old); err != nil {
				return fmt.Errorf("logstore: restore: %w", err)
			}
			if err := os.Rename(tmp, dir); err != nil {
				return fmt.Errorf("logstore: restore: %w", err)
			}
			tmp = old
		} else if err != nil {
			return fmt.Errorf("logstore: restore: exchange %s and %s: %w", tmp, dir, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("logstore: restore: fsync parent of %s: %w", dir, err)
	}
	// tmp now holds the old log (or nothing); failing to remove it only wastes space.
	os.RemoveAll(tmp)
	return nil
}

// recordCorrupt names the record the stream should have held where it is
// damaged, so that a copy of it from elsewhere can heal the source.
func (w *restoreWriter) recordCorrupt(err error) error {
	var ce *CorruptError
	if errors.As(err, &ce) {
		ce.Record, ce.HasRecord = w.next, true
	}
	return err
}
