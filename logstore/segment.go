package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// indexChunk is how much index file space is allocated (fallocate) at a time
// for the active segment, so that writes through the mapping never hit a hole
// on a full disk (which would be SIGBUS, not an error).
const indexChunk = 64 << 10

// segment is one store file (frames) and its index file (mmapped).
//
// Readers get a *segment from the published segment set and must acquire it
// before touching files or the mapping; the last release unmaps and closes.
type segment struct {
	base      uint64
	storePath string
	indexPath string
	store     *os.File
	index     *os.File
	idx       []byte  // mapping of the index file; entries start at fileHeaderSize
	lay       *layout // the segment's format version, for life

	refs atomic.Int64 // 1 for the owning Log plus one per reader; 0 = closed
	// vis is what readers may use, as one word (see setVisible): the
	// records visible and the store byte where the last of them ends. One
	// word, because a v2 index has no lengths: the last visible record
	// ends at that byte, the others where the next one starts, and a
	// reader must not pair a count with the end of another.
	vis atomic.Uint64
	// readDropped is dropped as readers see it (dropRead): published by
	// Log.dropPages after each drop, 0 for a log without Config.DropBehind.
	readDropped atomic.Int64
	// tix is the time samples for readers: the active segment's in memory;
	// for a sealed one nil until a lookup maps its time index file.
	tix atomic.Pointer[timeIndex]

	// The fields below are written only by the Log's writer under Log.flushMu.
	size     int64  // store bytes written (header included)
	count    uint64 // records written
	newest   int64  // unix nanos of the newest record; MaxInt64 when unknown
	idxAlloc int64  // index file bytes allocated
	sealed   bool
	dirty    bool // written since the last fdatasync
	// kicked is the store offset up to which the kernel was asked to start
	// writing the pages back (Log.writeBack).
	kicked int64
	// dropped is the store offset below which the pages were dropped from
	// the page cache (Log.dropBehind).
	dropped  int64
	unsynced bool        // sealed without syncing (SyncNever): Log.Sync still owes it an fdatasync
	times    timeSamples // the active segment's time samples (tix publishes them)
}

func segmentPaths(dir string, base uint64) (store, index string) {
	name := fmt.Sprintf("%020d", base)
	return filepath.Join(dir, name+".store"), filepath.Join(dir, name+".index")
}

// visEndBits holds a store's size: records start below 4 GiB
// (maxSegmentBytes) and one may run 1 GiB past. The count gets the other
// 28 bits: a frame takes at least 20 bytes, so a segment holds fewer than
// 2^32/20 + 1 < 2^28 records.
const visEndBits = 36

// setVisible publishes that the first count records, ending at store byte
// end, may be read.
func (s *segment) setVisible(count uint64, end int64) {
	s.vis.Store(count<<visEndBits | uint64(end))
}

// visible returns what setVisible last published.
func (s *segment) visible() (count uint64, end int64) {
	v := s.vis.Load()
	return v >> visEndBits, int64(v & (1<<visEndBits - 1))
}

// end is the store byte where the visible records end.
func (s *segment) end() int64 {
	_, end := s.visible()
	return end
}

func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.closeFiles()
	}
}

// removeFiles deletes the segment's files: the time index, the store, then
// the index (Open removes an index left without its store), then any
// torn-tail copy. The caller fsyncs the directory.
func (s *segment) removeFiles() error {
	var errs []error
	if err := removeTimeIndex(s.storePath); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(s.storePath); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(s.indexPath); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(s.storePath + ".broken"); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *segment) closeFiles() error {
	var errs []error
	errs = append(errs, s.unmapTimeIndex())
	if s.idx != nil {
		errs = append(errs, unix.Munmap(s.idx))
		s.idx = nil
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.index != nil {
		errs = append(errs, s.index.Close())
	}
	return errors.Join(errs...)
}

// indexCapacity is how many entries the active segment's mapping must hold:
// a record is written only while the store is below maxSegment bytes, and a
// frame is at least f.minFrame bytes.
func indexCapacity(f *layout, size, maxSegment int64, count uint64) uint64 {
	left := max(maxSegment-size, 0)
	return count + uint64(left/f.minFrame) + 2
}

// createSegment makes a new empty active segment and syncs its files (the
// caller syncs the directory).
func createSegment(dir string, base uint64, f *layout, maxSegment int64, sync bool) (_ *segment, err error) {
	storePath, indexPath := segmentPaths(dir, base)
	s := &segment{base: base, storePath: storePath, indexPath: indexPath, lay: f, size: fileHeaderSize, newest: math.MinInt64}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.store, err = os.OpenFile(storePath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
		return nil, err
	}
	if _, err = s.store.WriteAt(fileHeader(storeMagic, base, f.version), 0); err != nil {
		return nil, err
	}
	if sync {
		if err = unix.Fdatasync(int(s.store.Fd())); err != nil {
			return nil, fmt.Errorf("fdatasync %s: %w", storePath, err)
		}
	}
	if err = s.createIndex(maxSegment, 0); err != nil {
		return nil, err
	}
	s.setVisible(0, s.size)
	s.setTimes(nil)
	s.refs.Store(1)
	return s, nil
}

// createIndex (re)creates the active segment's index file and maps it with
// room for every record the segment can still take.
func (s *segment) createIndex(maxSegment int64, count uint64) (err error) {
	if s.index, err = os.OpenFile(s.indexPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return err
	}
	if _, err = s.index.WriteAt(fileHeader(indexMagic, s.base, s.lay.version), 0); err != nil {
		return err
	}
	s.idxAlloc = fileHeaderSize
	capacity := indexCapacity(s.lay, s.size, maxSegment, count)
	length := fileHeaderSize + int64(capacity)*s.lay.entrySize
	if s.idx, err = unix.Mmap(int(s.index.Fd()), 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("mmap %s: %w", s.indexPath, err)
	}
	return s.ensureIndex(count + 1)
}

// ensureIndex allocates index file space for n entries. Space is allocated
// for real (fallocate), so a full disk is an error here and never a SIGBUS on
// a write through the mapping.
func (s *segment) ensureIndex(n uint64) error {
	need := fileHeaderSize + int64(n)*s.lay.entrySize
	if need <= s.idxAlloc {
		return nil
	}
	if need > int64(len(s.idx)) {
		return fmt.Errorf("index %s: %d entries exceed the mapping", s.indexPath, n)
	}
	alloc := min((need+indexChunk-1)/indexChunk*indexChunk, int64(len(s.idx)))
	err := unix.Fallocate(int(s.index.Fd()), 0, s.idxAlloc, alloc-s.idxAlloc)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// Writing zeros allocates blocks too, just slower.
		_, err = s.index.WriteAt(make([]byte, alloc-s.idxAlloc), s.idxAlloc)
	}
	if err != nil {
		return fmt.Errorf("allocate index %s: %w", s.indexPath, err)
	}
	s.idxAlloc = alloc
	return nil
}

// Index entries: v1 a uint32 store position of the frame and a uint32
// payload length, v2 the position alone.

// putEntry writes entry i into the mapping (allocated by ensureIndex).
func (s *segment) putEntry(i uint64, pos int64, valueLen int) {
	putEntry(s.lay, s.idx, i, pos, valueLen)
}

func putEntry(f *layout, idx []byte, i uint64, pos int64, valueLen int) {
	o := fileHeaderSize + int64(i)*f.entrySize
	appendEntry(f, idx[o:o], pos, valueLen)
}

func appendEntry(f *layout, dst []byte, pos int64, valueLen int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(pos))
	if f.version == 1 {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(valueLen))
	}
	return dst
}

// entryPos is the store position entry i gives.
func (s *segment) entryPos(i uint64) int64 {
	o := fileHeaderSize + int64(i)*s.lay.entrySize
	return int64(binary.LittleEndian.Uint32(s.idx[o : o+4]))
}

// indexEntries is how many entries the mapping has room for.
func (s *segment) indexEntries() uint64 {
	if len(s.idx) < fileHeaderSize {
		return 0
	}
	return uint64(int64(len(s.idx)-fileHeaderSize) / s.lay.entrySize)
}

// entryByte is the index file position of entry i, for errors.
func (s *segment) entryByte(i uint64) int64 {
	return fileHeaderSize + int64(i)*s.lay.entrySize
}

// extent is where the frame of entry i lies by the index: its position and
// size, and its payload length (v1; -1 for v2, whose index has no length).
// A v2 frame ends where the next record starts or, for the last of the
// visCount records visible, at visEnd. i < visCount.
func (s *segment) extent(i, visCount uint64, visEnd int64) (pos, size int64, valueLen int) {
	pos = s.entryPos(i)
	if s.lay.version == 1 {
		o := s.entryByte(i)
		valueLen = int(binary.LittleEndian.Uint32(s.idx[o+4 : o+8]))
		return pos, s.lay.frameSize(valueLen), valueLen
	}
	end := visEnd
	if i+1 < visCount {
		end = s.entryPos(i + 1)
	}
	return pos, end - pos, -1
}

// seal makes the segment immutable: the index is trimmed to its true
// length, after which that length alone says how many records the segment
// holds. With sync (every policy but SyncNever) the store is fdatasynced
// first and the index msynced and fsynced after, so the trimmed index is
// durable before the next segment exists.
func (s *segment) seal(sync bool) error {
	if sync {
		if err := unix.Fdatasync(int(s.store.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", s.storePath, err)
		}
	}
	length := fileHeaderSize + int64(s.count)*s.lay.entrySize
	if sync {
		if err := unix.Msync(s.idx[:length], unix.MS_SYNC); err != nil {
			return fmt.Errorf("msync %s: %w", s.indexPath, err)
		}
	}
	if err := s.index.Truncate(length); err != nil {
		return fmt.Errorf("trim %s: %w", s.indexPath, err)
	}
	if sync {
		if err := s.index.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", s.indexPath, err)
		}
	}
	s.idxAlloc = length
	s.sealed = true
	s.dirty = false
	s.unsynced = !sync
	// Writing the index faulted its pages into this process; readers of a
	// sealed segment fault back in the few they touch. Dropping them keeps
	// the process's resident memory to the active segments' indexes
	// instead of growing with every segment written (the pages stay in the
	// page cache, and a dirty one is written back as usual: the mapping is
	// shared).
	_ = unix.Madvise(s.idx, unix.MADV_DONTNEED)
	return nil
}

// openSealed opens a segment that is not the newest. It trusts the index
// length (trimmed and synced on seal) and checks it against the store size
// and the last record, without scanning.
func openSealed(dir string, base uint64, maxValue int, rebuild func(*segment, error) error, logger *slog.Logger) (_ *segment, err error) {
	storePath, indexPath := segmentPaths(dir, base)
	s := &segment{base: base, storePath: storePath, indexPath: indexPath, sealed: true}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.store, err = os.Open(storePath); err != nil {
		return nil, err
	}
	if s.lay, err = s.readStoreHeader(); err != nil {
		return nil, err
	}
	if s.size, err = fileSize(s.store); err != nil {
		return nil, err
	}
	if err = s.mapSealedIndex(maxValue); err != nil {
		if rebuild == nil {
			return nil, err
		}
		if err = rebuild(s, err); err != nil {
			return nil, err
		}
	}
	// The newest record's time drives age retention. A damaged last record
	// is reported when read; here it only makes the age unknown, and
	// such a segment is never deleted by age.
	s.setVisible(s.count, s.size)
	s.newest = math.MaxInt64
	if s.count > 0 {
		rec, err := s.readOne(base+s.count-1, maxValue)
		if err != nil {
			logger.Error("logstore: last record of a sealed segment unreadable; age retention skips it", "err", err)
		} else {
			s.newest = rec.Time.UnixNano()
		}
	}
	s.refs.Store(1)
	return s, nil
}

func (s *segment) readStoreHeader() (*layout, error) {
	h := make([]byte, fileHeaderSize)
	if _, err := s.store.ReadAt(h, 0); err != nil {
		return nil, corrupt(s.storePath, 0, "reading header: %v", err)
	}
	f, err := checkFileHeader(h, storeMagic, s.base)
	if err != nil {
		return nil, corrupt(s.storePath, 0, "%v", err)
	}
	return f, nil
}

// mapSealedIndex maps a sealed index read-only and checks that its length
// and last entry agree with the store.
func (s *segment) mapSealedIndex(maxValue int) (err error) {
	if s.index, err = os.Open(s.indexPath); err != nil {
		return err
	}
	size, err := fileSize(s.index)
	if err != nil {
		return err
	}
	if size < fileHeaderSize || (size-fileHeaderSize)%s.lay.entrySize != 0 {
		return corrupt(s.indexPath, 0, "length %d is not a header plus whole entries", size)
	}
	if s.idx, err = unix.Mmap(int(s.index.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("mmap %s: %w", s.indexPath, err)
	}
	f, err := checkFileHeader(s.idx, indexMagic, s.base)
	if err != nil {
		return corrupt(s.indexPath, 0, "%v", err)
	}
	if f != s.lay {
		return corrupt(s.indexPath, 0, "format version %d, the store's is %d", f.version, s.lay.version)
	}
	s.count = uint64(size-fileHeaderSize) / uint64(s.lay.entrySize)
	s.idxAlloc = size
	end := int64(fileHeaderSize)
	if s.count > 0 {
		if pos := s.entryPos(0); pos != fileHeaderSize {
			return corrupt(s.indexPath, fileHeaderSize, "first entry at store byte %d, want %d", pos, fileHeaderSize)
		}
		if end, err = s.lastFrameEnd(maxValue); err != nil {
			return err
		}
	}
	if end != s.size {
		return corrupt(s.indexPath, size-s.lay.entrySize, "entries end at store byte %d but the store has %d bytes", end, s.size)
	}
	return nil
}

// lastFrameEnd is where the last record of a sealed segment ends by its
// index entry: v1 entries have the length; for v2 it is read from the
// fixed part of the frame.
func (s *segment) lastFrameEnd(maxValue int) (int64, error) {
	i := s.count - 1
	at := s.entryByte(i)
	pos, size, n := s.extent(i, s.count, s.size)
	if s.lay.version == 1 {
		if n > maxValue {
			return 0, corrupt(s.indexPath, at, "entry length %d exceeds the limit %d", n, maxValue)
		}
		return pos + size, nil
	}
	if pos < fileHeaderSize || pos+int64(s.lay.headerSize) > s.size {
		return 0, corrupt(s.indexPath, at, "last entry points at store byte %d of %d", pos, s.size)
	}
	b := make([]byte, s.lay.headerSize)
	if _, err := s.store.ReadAt(b, pos); err != nil {
		return 0, fmt.Errorf("logstore: read %s at byte %d: %w", s.storePath, pos, err)
	}
	h, err := s.lay.parseFrameHeader(b, maxValue)
	if err == nil && pos+h.size() != s.size {
		err = fmt.Errorf("its frame ends at byte %d", pos+h.size())
	}
	if err != nil {
		return 0, &lastFrameError{pos: pos, err: corrupt(s.indexPath, at, "last entry points at store byte %d of %d: %v", pos, s.size, err)}
	}
	return pos + h.size(), nil
}

// lastFrameError says that the last frame of a sealed v2 segment does not
// end its store. Either the index is wrong or that frame is damaged; a scan
// of the store tells which (rebuildSealedIndex).
type lastFrameError struct {
	pos int64 // the store byte the last entry gives
	err error
}

func (e *lastFrameError) Error() string { return e.err.Error() }
func (e *lastFrameError) Unwrap() error { return e.err }

func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// readOne reads a single record of this segment (acquired by the caller).
func (s *segment) readOne(offset uint64, maxValue int) (Record, error) {
	recs, err := s.read(offset, 1, 0, nil, s.base+s.count, maxValue, nil)
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// dropRead drops the pages of a read of store bytes [start, end) that lies
// behind the log's cached tail (Config.DropBehind), up to the last whole
// hintEvery step it reached: a reader catching up reads them from the disk
// and will not read them again, and kept they would take fresh pages where
// the writer's dropped ones would do and push the tail's out of the cache
// (Kafka's page cache has no such bound). A reader just behind the tail
// leaves its pages alone; a second reader as far back reads them from the
// disk again. A read that ends where the writer's drop does drops to
// there: the end of a sealed segment, its last partial page included.
func (s *segment) dropRead(start, end int64) {
	dropped := s.readDropped.Load()
	step := start &^ (hintEvery - 1)
	to := end &^ (hintEvery - 1)
	if end == dropped {
		to = end
	}
	if end > dropped || to <= step {
		return
	}
	from := max(0, step-maxFolio)
	_ = unix.Fadvise(int(s.store.Fd()), from, to-from, unix.FADV_DONTNEED) // only a hint
}

// read appends records [offset, limit) to dst, at most maxRecords and about
// maxBytes of values (at least one record). limit must not exceed the
// records visible in this segment. The caller holds a reference. The
// records point into fresh memory, or, with mem set, into mem's, which
// they overwrite.
func (s *segment) read(offset uint64, maxRecords, maxBytes int, dst []Record, limit uint64, maxValue int, mem *Batch) ([]Record, error) {
	visCount, visEnd := s.visible()
	if offset < s.base || limit <= offset || limit-s.base > min(s.indexEntries(), visCount) {
		// Never for a consistent view; a guard so that no mix-up can make
		// the index mapping be read out of bounds.
		return dst, corrupt(s.indexPath, 0, "offsets [%d, %d) are not in this segment's index", offset, limit)
	}
	first := offset - s.base
	n := limit - offset
	if maxRecords > 0 && uint64(maxRecords) < n {
		n = uint64(maxRecords)
	}
	start := s.entryPos(first)
	if start < fileHeaderSize {
		return dst, corrupt(s.indexPath, s.entryByte(first), "entry for offset %d points at store byte %d", offset, start)
	}
	end := start
	total := 0
	var k uint64
	for k = 0; k < n; k++ {
		pos, size, vlen := s.extent(first+k, visCount, visEnd)
		if vlen < 0 {
			vlen = int(size) - s.lay.headerSize // about: padding included
		}
		if pos != end || size < s.lay.minFrame || size > s.lay.frameSize(maxValue) {
			return dst, corrupt(s.indexPath, s.entryByte(first+k),
				"entry for offset %d (store byte %d, %d bytes) does not follow the previous record ending at %d", offset+k, pos, size, end)
		}
		if k > 0 && maxBytes > 0 && total+vlen > maxBytes {
			break
		}
		total += vlen
		end += size
	}
	if end > visEnd {
		return dst, corrupt(s.indexPath, s.entryByte(first),
			"entries for offsets %d.. claim store bytes up to %d, but the store has %d", offset, end, visEnd)
	}
	var (
		buf     []byte
		ownSlab []Header
		slab    = &ownSlab // where decodeRecord carves headers (and keeps a grown slab)
	)
	if mem == nil {
		buf = make([]byte, end-start)
	} else {
		if int64(cap(mem.buf)) < end-start {
			mem.buf = make([]byte, end-start)
		}
		buf = mem.buf[:end-start]
		mem.slab, slab = mem.slab[:0], &mem.slab
	}
	if err := s.readAt(buf, start); err != nil {
		return dst, err
	}
	s.dropRead(start, end)
	var p int64
	for i := range k {
		off := offset + i
		_, size, vlen := s.extent(first+i, visCount, visEnd)
		h, value, err := s.lay.decodeFrame(buf[p:p+size], off, maxValue)
		if err != nil {
			ce := corrupt(s.storePath, start+p, "record %d: %v", off, err).(*CorruptError)
			ce.Record, ce.HasRecord = off, true
			return dst, ce
		}
		if h.size() != size || (vlen >= 0 && vlen != h.valueLen) {
			return dst, corrupt(s.storePath, start+p, "record %d: a frame of %d bytes (length %d), the index says %d bytes", off, h.size(), h.valueLen, size)
		}
		rec := Record{Offset: off, Time: timeFromNanos(h.unixNano)}
		if err := decodeRecord(h, value, &rec, slab, int(k-i)); err != nil {
			return dst, corrupt(s.storePath, start+p, "record %d: %v", off, err)
		}
		dst = append(dst, rec)
		p += size
	}
	return dst, nil
}

// timeAt returns the time stored in the frame of the record at offset,
// reading only the frame's fixed part: a lookup by time probes O(log n)
// records and needs none of their values. The caller holds a reference and
// offset is visible in this segment.
func (s *segment) timeAt(offset uint64) (int64, error) {
	i := offset - s.base
	if offset < s.base || i >= s.indexEntries() {
		return 0, corrupt(s.indexPath, 0, "offset %d is not in this segment's index", offset)
	}
	pos := s.entryPos(i)
	b := make([]byte, s.lay.headerSize)
	if err := s.readAt(b, pos); err != nil {
		return 0, err
	}
	h, err := s.lay.parseFrameHeader(b, maxRecordLimit)
	if err == nil && !s.lay.holds(h, offset) {
		err = fmt.Errorf("frame holds offset %d, want %d", h.offset, offset)
	}
	if err != nil {
		return 0, corrupt(s.storePath, pos, "record %d: %v", offset, err)
	}
	return h.unixNano, nil
}

// readAt fills b with the store's bytes at pos.
func (s *segment) readAt(b []byte, pos int64) error {
	if _, err := s.store.ReadAt(b, pos); err != nil {
		if errors.Is(err, io.EOF) {
			return corrupt(s.storePath, pos, "index points past the end of the store: %v", err)
		}
		return fmt.Errorf("logstore: read %s at byte %d: %w", s.storePath, pos, err)
	}
	return nil
}
