package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Record is one entry of the log. Its slices are owned by the caller; a
// read record's alias a buffer of its own.
type Record struct {
	Offset  uint64
	Time    time.Time
	Key     []byte
	Headers []Header // in the order given; keys may repeat
	Value   []byte
}

// Header is one key/value pair of a record's metadata.
type Header struct {
	Key   string
	Value []byte
}

// Size is what the record counts against Config.MaxRecordBytes: its key,
// its header keys and values, and its value.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Stats describes a log at one moment.
type Stats struct {
	Lowest, Next uint64
	SizeBytes    int64 // bytes in segment stores
	Segments     int
}

// segmentSet is an immutable snapshot of the segments, oldest first; the
// last one is the active segment. Readers load it without any lock.
type segmentSet struct {
	segs []*segment
}

// holding returns the index of the segment that holds offset, which must
// be at or above the first segment's base.
func (set *segmentSet) holding(offset uint64) int {
	i, found := slices.BinarySearchFunc(set.segs, offset, func(s *segment, o uint64) int {
		switch {
		case s.base < o:
			return -1
		case s.base > o:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	return i
}

// pendingBatch holds encoded frames waiting for the next flush.
type pendingBatch struct {
	buf  []byte // frames back to back
	base uint64 // offset of the first frame
	n    uint64 // frames in buf
}

// flushWaiter is shared by every append in one pending batch; done is
// closed once the batch is flushed, with err set before.
type flushWaiter struct {
	done chan struct{}
	err  error
}

// Log is a segmented, crash-safe commit log. One writer path (serialised
// internally, with group commit) and any number of concurrent readers.
type Log struct {
	dir     string
	cfg     Config
	logger  *slog.Logger
	m       *metrics
	dirFile *os.File // held open for the lock and directory fsyncs
	lay     *layout  // the format of new segments and of every queued frame

	mu       sync.Mutex // guards pending, waiter, assigned, failed, closing
	pending  pendingBatch
	waiter   *flushWaiter // woken when the pending batch is flushed (SyncAlways)
	assigned uint64       // offset the next Append gets
	stamped  int64        // latest time written, unix nanos: a floor for Config.Now
	failed   error        // set once a flush fails; appends then fail with it
	closing  bool

	flushMu  sync.Mutex // guards the active segment's files and fields, rolls, segment set changes, spare, durable, flushErr
	spare    pendingBatch
	durable  uint64 // every offset below it is flushed per the policy
	flushErr error

	next atomic.Uint64 // offsets below it are visible to readers
	segs atomic.Pointer[segmentSet]
	// epoch is a sequence count of truncations (TruncateFrom, Reset): odd
	// while next and segs are changed together, bumped again once they agree,
	// so readers can tell a consistent pair, and a read that may have seen
	// bytes a truncation cut or rewrote, from a good one. Appends and
	// TruncateBefore never touch it: they only grow next or drop whole
	// segments, which readers already cope with.
	epoch     atomic.Uint64
	sizeBytes atomic.Int64
	closed    atomic.Bool

	waitMu sync.Mutex    // guards waitCh
	waitCh chan struct{} // closed and cleared when next advances or the log closes

	// step, when set (tests only), is called before each file operation of
	// TruncateFrom and Reset; an error stops the operation there, as a crash would.
	step func(what string) error

	kick chan struct{} // wakes the committer (SyncAlways); capacity 1
	stop context.CancelFunc
	// bg is the context of the background loops, ended by stop.
	bg context.Context
	// retaining: the retention loop runs (guarded by flushMu).
	retaining bool
	wg        sync.WaitGroup // background goroutines (committer, interval sync, retention)
	closeMu   sync.Mutex     // serialises Close
	closeErr  error
}

// retentionEvery is how often retention runs besides on every roll.
const retentionEvery = time.Minute

// Open opens or creates the log in dir. It recovers the active segment (the
// newest) and checks the others without scanning them.
func Open(dir string, cfg Config) (_ *Log, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	l := &Log{dir: dir, cfg: cfg, logger: cfg.Logger, lay: layoutNew}
	if cfg.format != 0 {
		l.lay = layoutFor(cfg.format)
	}
	if l.dirFile, err = os.Open(dir); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	if err := unix.Flock(int(l.dirFile.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		l.dirFile.Close()
		return nil, fmt.Errorf("logstore: lock %s (is another process using it?): %w", dir, err)
	}
	var segs []*segment
	defer func() {
		if err != nil {
			for _, s := range segs {
				s.closeFiles()
			}
			l.dirFile.Close() // also drops the lock
		}
	}()
	segs, err = l.openSegments()
	if err != nil {
		return nil, err
	}
	active := segs[len(segs)-1]
	next := active.base + active.count
	l.assigned, l.durable = next, next
	l.next.Store(next)
	l.segs.Store(&segmentSet{segs: segs})
	var size int64
	l.stamped = math.MinInt64
	for _, s := range segs {
		size += s.size
		if s.newest != math.MaxInt64 { // unknown: a damaged last record
			l.stamped = max(l.stamped, s.newest)
		}
	}
	l.sizeBytes.Store(size)
	err = l.upgradeActive()
	segs = l.segs.Load().segs // closed by the deferred cleanup on failure
	if err != nil {
		return nil, err
	}
	if l.m, err = newMetrics(cfg.Registerer, l); err != nil {
		return nil, err
	}
	if err := l.retain(); err != nil {
		l.m.unregister()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	l.stop, l.bg = stop, ctx
	if cfg.Sync == SyncAlways {
		l.kick = make(chan struct{}, 1)
		l.wg.Go(func() { l.commitLoop(ctx) })
	}
	if cfg.Sync == SyncInterval {
		l.wg.Go(func() { l.syncLoop(ctx) })
	}
	if cfg.RetentionBytes > 0 || cfg.RetentionAge > 0 {
		l.retaining = true
		l.wg.Go(func() { l.retentionLoop(ctx) })
	}
	return l, nil
}

// openSegments lists the directory, opens sealed segments cheaply and
// recovers the active one.
func (l *Log) openSegments() ([]*segment, error) {
	names, err := l.dirFile.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("logstore: list %s: %w", l.dir, err)
	}
	if slices.Contains(names, resetMarker) {
		if err := l.recoverReset(); err != nil {
			return nil, fmt.Errorf("logstore: interrupted reset in %s: %w", l.dir, err)
		}
		entries, err := os.ReadDir(l.dir)
		if err != nil {
			return nil, fmt.Errorf("logstore: list %s: %w", l.dir, err)
		}
		names = names[:0]
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	stores := map[uint64]bool{}
	indexes := map[uint64]bool{}
	times := map[uint64]bool{}
	for _, name := range names {
		stem, ext, ok := strings.Cut(name, ".")
		if !ok || len(stem) != 20 {
			continue
		}
		base, err := strconv.ParseUint(stem, 10, 64)
		if err != nil {
			continue
		}
		switch ext {
		case "store":
			stores[base] = true
		case "index":
			indexes[base] = true
		case "timeindex":
			times[base] = true
		case "index.tmp", "store.tmp", "timeindex.tmp":
			os.Remove(filepath.Join(l.dir, name)) // an interrupted index rebuild, upgrade or seal
		}
	}
	for base := range times {
		if !stores[base] {
			// Left by a segment deletion; nothing refers to it.
			storePath, _ := segmentPaths(l.dir, base)
			removeTimeIndex(storePath)
		}
	}
	var orphans bool
	for base := range indexes {
		if !stores[base] {
			// Deleting a segment removes its store first; finish the job.
			_, index := segmentPaths(l.dir, base)
			l.logger.Warn("logstore: removing index without store", "file", index)
			if err := os.Remove(index); err != nil {
				return nil, fmt.Errorf("logstore: %w", err)
			}
			orphans = true
		}
	}
	if orphans {
		if err := l.dirFile.Sync(); err != nil {
			return nil, fmt.Errorf("logstore: fsync %s: %w", l.dir, err)
		}
	}
	bases := make([]uint64, 0, len(stores))
	for b := range stores {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	var segs []*segment
	fail := func(err error) ([]*segment, error) {
		for _, s := range segs {
			s.closeFiles()
		}
		return nil, err
	}
	if len(bases) == 0 {
		s, err := createSegment(l.dir, 0, l.lay, l.cfg.MaxSegmentBytes, true)
		if err != nil {
			return nil, fmt.Errorf("logstore: create first segment: %w", err)
		}
		if err := l.dirFile.Sync(); err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("logstore: fsync %s: %w", l.dir, err)
		}
		return []*segment{s}, nil
	}
	// Records already on disk are checked against the format's limit, not
	// MaxRecordBytes: lowering the setting must not turn old records into
	// "corrupt" ones or, at the tail, into a torn write to cut off. Untrusted
	// lengths still never drive an allocation beyond the bytes in the file.
	maxValue := maxRecordLimit
	rebuild := func(s *segment, cause error) error {
		return rebuildSealedIndex(s, maxValue, cause, l.logger)
	}
	for i, base := range bases {
		var s *segment
		if i == len(bases)-1 {
			s, err = openActive(l.dir, base, l.lay, l.cfg.MaxSegmentBytes, maxValue, l.cfg.timeEvery, l.logger)
		} else {
			s, err = openSealed(l.dir, base, maxValue, rebuild, l.logger)
		}
		if err != nil {
			return fail(fmt.Errorf("logstore: open segment %d: %w", base, err))
		}
		segs = append(segs, s)
		if i > 0 {
			prev := segs[i-1]
			if prev.base+prev.count != base {
				return fail(corrupt(s.storePath, 0, "segment starts at offset %d but the previous one ends at %d", base, prev.base+prev.count))
			}
		}
	}
	return segs, nil
}

func timeFromNanos(n int64) time.Time { return time.Unix(0, n) }

// Append writes one record and returns its offset once it is as durable as
// the sync policy promises. ctx is checked before the record is queued; once
// queued the call waits for the flush that carries it.
func (l *Log) Append(ctx context.Context, value []byte) (uint64, error) {
	return l.AppendRecords(ctx, []Record{{Value: value}})
}

// AppendBatch writes values as consecutive records in one durable write and
// returns the offset of the first. Either all are acknowledged or none.
func (l *Log) AppendBatch(ctx context.Context, values [][]byte) (uint64, error) {
	recs := make([]Record, len(values))
	for i, v := range values {
		recs[i].Value = v
	}
	return l.AppendRecords(ctx, recs)
}

// AppendRecords writes recs as consecutive records in one durable write and
// returns the offset of the first; their Offset fields are ignored. Either
// all are acknowledged or none. A record's Time is stored as given; a zero
// Time gets Config.Now, or the latest time stored if the clock went back,
// so that times stamped here never decrease (OffsetForTime relies on it).
func (l *Log) AppendRecords(ctx context.Context, recs []Record) (uint64, error) {
	if len(recs) == 0 {
		return 0, errors.New("logstore: AppendRecords needs at least one record")
	}
	total := 0
	for i := range recs {
		r := &recs[i]
		if size := r.Size(); size > l.cfg.MaxRecordBytes {
			if len(recs) == 1 {
				return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, size, l.cfg.MaxRecordBytes)
			}
			return 0, fmt.Errorf("%w: record %d has %d bytes, limit %d", ErrRecordTooLarge, i, size, l.cfg.MaxRecordBytes)
		}
		n := payloadSize(r)
		if n > l.lay.maxPayload {
			return 0, fmt.Errorf("%w: record %d takes %d bytes with its key and headers, limit %d", ErrRecordTooLarge, i, n, l.lay.maxPayload)
		}
		total += int(l.lay.frameSize(n))
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := l.cfg.Now().UnixNano()
	l.mu.Lock()
	if err := l.appendable(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	base := l.assigned
	l.assigned += uint64(len(recs))
	if l.pending.n == 0 {
		l.pending.base = base
	}
	l.pending.buf = slices.Grow(l.pending.buf, total)
	for i := range recs {
		t := now
		if !recs[i].Time.IsZero() {
			t = recs[i].Time.UnixNano()
		} else if t < l.stamped {
			t = l.stamped
		}
		l.stamped = max(l.stamped, t)
		l.pending.buf = l.lay.appendFrame(l.pending.buf, base+uint64(i), t, &recs[i])
	}
	l.pending.n += uint64(len(recs))
	if err := l.commit(base + uint64(len(recs))); err != nil {
		return 0, err
	}
	return base, nil
}

func (l *Log) appendable() error {
	if l.closing {
		return ErrClosed
	}
	return l.failed
}

// commit returns once every offset below end is flushed. The caller holds
// mu, having just queued its frames; commit releases it.
//
// Under SyncAlways the committer goroutine flushes: it takes everything
// queued, writes it with one write and one fdatasync, and wakes all the
// appends of that batch at once (group commit). Waking them together
// matters: handing a mutex from one waiter to the next costs more than the
// fsync they share. Under the other policies there is no fsync to share, so
// the appender writes inline, which saves two goroutine switches per record.
func (l *Log) commit(end uint64) error {
	if l.kick != nil {
		if l.waiter == nil {
			l.waiter = &flushWaiter{done: make(chan struct{})}
		}
		w := l.waiter
		l.mu.Unlock()
		select {
		case l.kick <- struct{}{}:
		default: // a kick is pending already; the committer will take our frames too
		}
		<-w.done
		return w.err
	}
	l.mu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.durable >= end {
		return nil
	}
	if l.flushErr != nil {
		return l.flushErr
	}
	return l.flushPending(false)
}

// commitLoop is the committer under SyncAlways; Close stops it and then
// flushes whatever is left itself.
func (l *Log) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		}
		l.flushMu.Lock()
		l.flushPending(true)
		l.flushMu.Unlock()
		l.gather()
	}
}

// gather lets the appenders just woken queue their next records before the
// committer takes the next batch: it yields while the queue still grows (a
// few times at most). Otherwise the next fsync carries only the first one or
// two of them and batches alternate small and large.
func (l *Log) gather() {
	var prev uint64
	for range 8 {
		runtime.Gosched()
		l.mu.Lock()
		n := l.pending.n
		l.mu.Unlock()
		if n == prev {
			return
		}
		prev = n
	}
}

// flushPending takes the queued frames, flushes them and wakes their
// waiter. Caller holds flushMu.
func (l *Log) flushPending(sync bool) error {
	l.mu.Lock()
	b, w := l.detachPending()
	l.mu.Unlock()
	return l.flushDetached(b, w, sync, true)
}

// detachPending takes the queued frames and their waiter. Caller holds
// flushMu and mu.
func (l *Log) detachPending() (pendingBatch, *flushWaiter) {
	// Double buffering: appenders fill one buffer while this flush writes
	// the other; spare is only touched under flushMu.
	b, w := l.pending, l.waiter
	l.pending, l.waiter = pendingBatch{buf: l.spare.buf[:0]}, nil
	return b, w
}

// flushDetached flushes a batch taken by detachPending and wakes its
// waiter; retain says whether a roll may run retention. Caller holds flushMu.
func (l *Log) flushDetached(b pendingBatch, w *flushWaiter, sync, retain bool) error {
	defer func() {
		l.spare = pendingBatch{}
		if cap(b.buf) <= 4<<20 { // keep a buffer for reuse, but not a huge one
			l.spare.buf = b.buf[:0]
		}
	}()
	var err error
	switch {
	case b.n == 0:
	case l.flushErr != nil:
		err = l.flushErr
	default:
		err = l.flush(b, sync, retain)
		if err != nil {
			err = l.fail("write", err)
		}
	}
	if w != nil {
		w.err = err
		close(w.done)
	}
	if err == nil && b.n > 0 {
		// After the waiters are woken: a hint is worth none of their time.
		l.hintPages(sync)
	}
	return err
}

// flush writes frames to the active segment, rolling to new segments as
// they fill, syncs per policy and then makes the records visible. After a
// roll it runs retention if retain is set. Caller holds flushMu.
func (l *Log) flush(b pendingBatch, sync, retain bool) error {
	set := l.segs.Load()
	seg := set.segs[len(set.segs)-1]
	if seg.lay != l.lay {
		return fmt.Errorf("internal: active segment %d has format version %d, the frames %d", seg.base, seg.lay.version, l.lay.version)
	}
	rolled := false
	var chunkStart, p int64 // chunk of buf going to seg
	var chunkCount uint64
	var newest int64
	writeChunk := func() error {
		if p == chunkStart {
			return nil
		}
		if _, err := seg.store.WriteAt(b.buf[chunkStart:p], seg.size); err != nil {
			return err // an *os.PathError naming the store
		}
		seg.size += p - chunkStart
		seg.count += chunkCount
		seg.newest = newest
		seg.dirty = true
		l.sizeBytes.Add(p - chunkStart)
		chunkStart, chunkCount = p, 0
		return nil
	}
	valueBytes := 0
	for i := uint64(0); i < b.n; i++ {
		h, err := l.lay.parseFrameHeader(b.buf[p:], maxRecordLimit)
		if err != nil {
			return fmt.Errorf("internal: queued frame: %w", err)
		}
		valueBytes += h.valueLen
		pos := seg.size + (p - chunkStart)
		if pos >= l.cfg.MaxSegmentBytes && seg.count+chunkCount > 0 {
			if err := writeChunk(); err != nil {
				return err
			}
			next, err := l.roll(seg)
			if err != nil {
				return err
			}
			seg, pos, rolled = next, next.size, true
		}
		idx := seg.count + chunkCount
		if err := seg.ensureIndex(idx + 1); err != nil {
			return err
		}
		seg.putEntry(idx, pos, h.valueLen)
		seg.sampleTime(l.cfg.timeEvery, idx, pos, h.unixNano)
		newest = h.unixNano
		chunkCount++
		p += h.size()
	}
	if err := writeChunk(); err != nil {
		return err
	}
	if sync {
		if err := l.fdatasync(seg); err != nil {
			return err
		}
	}
	end := b.base + b.n
	l.durable = end
	seg.setVisible(seg.count, seg.size)
	l.next.Store(end)
	l.broadcast()
	if l.m != nil {
		l.m.records.Add(float64(b.n))
		l.m.bytes.Add(float64(valueBytes))
	}
	if rolled && retain {
		if err := l.retain(); err != nil {
			l.logger.Error("logstore: retention failed", "err", err)
		}
	}
	return nil
}

// hintPages tells the kernel what to do with the pages a flush wrote:
// start writing them back (not synced), and with Config.DropBehind drop
// those that have fallen behind the log's cached tail. Caller holds
// flushMu.
func (l *Log) hintPages(synced bool) {
	if !synced {
		set := l.segs.Load()
		l.writeBack(set.segs[len(set.segs)-1])
	}
	l.dropBehind()
}

// hintEvery is how many bytes of pages a hint lets accumulate before it
// is given: one per flush would cost more than it saves.
const hintEvery = 1 << 20

// hintStep returns where the next hint starts, the end of the last one,
// and moves that end (*done) to end; false while less than step lies
// between them. A truncation may have cut the segment below *done.
func hintStep(done *int64, size, end, step int64) (from int64, ok bool) {
	*done = min(*done, size)
	if end-*done < step {
		return 0, false
	}
	from, *done = *done, end
	return from, true
}

// writeBack asks the kernel to start writing back the segment's pages
// written since it last asked, once they reach hintEvery, without waiting
// (sync_file_range(2) SYNC_FILE_RANGE_WRITE; durability still comes only
// from fdatasync). Left alone, the kernel lets dirty pages pile up (by
// default to a tenth of memory, or for 30 s) and writes them in a burst
// that fills the disk's queue, and every fdatasync behind it, a Raft log's
// included, waits seconds; written as they come, they cost the disk the
// same bytes without the stall (RocksDB's bytes_per_sync for the same
// reason). A failure only loses the hint.
//
// It stops at the last whole page: the page the next append writes into
// stays dirty only, rather than going to disk half full and again (or
// making that append wait for it) moments later.
func (l *Log) writeBack(s *segment) {
	end := s.size &^ (pageSize - 1)
	from, ok := hintStep(&s.kicked, s.size, end, hintEvery)
	if !ok {
		return
	}
	if err := unix.SyncFileRange(int(s.store.Fd()), from, end-from, unix.SYNC_FILE_RANGE_WRITE); err != nil {
		l.logger.Debug("logstore: sync_file_range", "path", s.storePath, "err", err)
	}
}

// dropBehind drops from the page cache the pages more than
// Config.DropBehind bytes behind the log's end, across segments, in steps
// of hintEvery (a sealed segment's last ones at once). Left alone, every
// page written stays cached until memory runs short: a Raft log's,
// although nothing reads it back but a follower just behind, and a
// record store's, although consumers mostly read its end. Freed at once,
// the pages are what the next writes take, where otherwise every write
// takes a page the kernel has never used or has given back (on a VM that
// hands freed memory to its host, a host fault per page: ~70 times the
// cost of a reused one here, docs/benchmarks.md). BookKeeper's journal and
// PostgreSQL's WAL drop theirs for the same reason; Redpanda keeps a
// bounded cache of its own. Pages not known to be synced are written back
// first, waiting for those pages only (sync_file_range: no durability
// promise, but only clean pages can be dropped); they were handed to
// write-back (writeBack) DropBehind bytes ago, so the wait is short. A
// failure only loses the hint.
func (l *Log) dropBehind() {
	keep := l.cfg.DropBehind // bytes at the end of the log still to keep
	if keep <= 0 {
		return
	}
	segs := l.segs.Load().segs
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		sealed := i < len(segs)-1
		if sealed && s.dropped >= s.size {
			return // and every older one before it
		}
		end := s.size - keep
		keep -= s.size
		if end > 0 {
			l.dropPages(s, end, sealed)
		}
	}
}

// dropPages drops the segment's pages below end (all of a sealed one's
// once end reaches its size) that are not dropped yet, and records how far
// it got for the next call and for readers (segment.dropRead).
func (l *Log) dropPages(s *segment, end int64, sealed bool) {
	whole := sealed && end >= s.size
	step := int64(hintEvery)
	if whole {
		end, step = s.size, 1
	} else {
		end &^= pageSize - 1
	}
	from, ok := hintStep(&s.dropped, s.size, end, step)
	if !ok {
		return
	}
	// From a little before the previous end: the kernel keeps a large folio
	// that a range covers only in part, as the one across that end was.
	from = max(0, from-maxFolio)
	n := end - from
	if whole {
		n = 0 // to the end of the file, its last partial page too
	}
	fd := int(s.store.Fd())
	if l.cfg.Sync != SyncAlways {
		const flags = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
		if err := unix.SyncFileRange(fd, from, n, flags); err != nil {
			l.logger.Debug("logstore: sync_file_range", "path", s.storePath, "err", err)
		}
	}
	if err := unix.Fadvise(fd, from, n, unix.FADV_DONTNEED); err != nil {
		l.logger.Debug("logstore: fadvise", "path", s.storePath, "err", err)
	}
	s.readDropped.Store(end) // after the drop: below it, pages are clean
}

// maxFolio bounds the page cache's large folios (a PMD, 2 MiB on x86-64).
const maxFolio = 2 << 20

// pageSize is the page cache's unit (a power of two).
var pageSize = int64(os.Getpagesize())

func (l *Log) fdatasync(s *segment) error {
	start := time.Now()
	if err := unix.Fdatasync(int(s.store.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", s.storePath, err)
	}
	if l.m != nil {
		l.m.fsync.Observe(time.Since(start).Seconds())
	}
	s.dirty = false
	return nil
}

// Sync forces every record written so far, in every segment, to stable
// storage, whatever the policy: under SyncNever sealed segments are not
// synced when they are sealed, and this is how a caller that is about to
// drop its only other copy of the records (replication compacting Raft's
// log after a snapshot) makes them durable first. A failure is fatal for
// the log, as for any fsync.
func (l *Log) Sync() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.flushErr != nil {
		return l.flushErr
	}
	set := l.segs.Load()
	err := l.syncSealed(set.segs)
	if active := set.segs[len(set.segs)-1]; err == nil && active.dirty {
		err = l.fdatasync(active)
	}
	if err != nil {
		return l.fail("fdatasync", err)
	}
	return nil
}

// fail puts the log in its failed state after a write or sync error: every
// later append returns the error, wrapping ErrFailed, until the log is
// reopened. Caller holds flushMu.
func (l *Log) fail(what string, err error) error {
	l.flushErr = fmt.Errorf("%w: %w", ErrFailed, err)
	l.mu.Lock()
	l.failed = l.flushErr
	l.mu.Unlock()
	l.logger.Error("logstore: "+what+" failed; refusing appends until reopened", "dir", l.dir, "err", err)
	return l.flushErr
}

// roll seals the full active segment and starts the next. Caller holds flushMu.
func (l *Log) roll(old *segment) (*segment, error) {
	if err := old.seal(l.cfg.Sync != SyncNever); err != nil {
		return nil, err
	}
	l.sealTimes(old) // made durable by the directory fsync below
	old.setVisible(old.count, old.size)
	s, err := createSegment(l.dir, old.base+old.count, l.lay, l.cfg.MaxSegmentBytes, l.cfg.Sync != SyncNever)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := l.syncDir(); err != nil {
		s.release()
		return nil, fmt.Errorf("fsync %s: %w", l.dir, err)
	}
	l.sizeBytes.Add(s.size)
	cur := l.segs.Load().segs
	segs := make([]*segment, len(cur), len(cur)+1)
	copy(segs, cur)
	l.segs.Store(&segmentSet{segs: append(segs, s)})
	return s, nil
}

// syncDir makes creates and removes in the directory durable, under every
// policy: it is cheap, and it keeps the set of segment files consistent.
func (l *Log) syncDir() error {
	return l.dirFile.Sync()
}

// broadcast wakes every Wait.
func (l *Log) broadcast() {
	l.waitMu.Lock()
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	l.waitMu.Unlock()
}

// Wait blocks until offset < next (nil), ctx is done (ctx.Err()) or the log
// is closed (ErrClosed).
func (l *Log) Wait(ctx context.Context, offset uint64) error {
	for {
		if offset < l.next.Load() {
			return nil
		}
		if l.closed.Load() {
			return ErrClosed
		}
		l.waitMu.Lock()
		if l.waitCh == nil {
			l.waitCh = make(chan struct{})
		}
		ch := l.waitCh
		l.waitMu.Unlock()
		// Check again: an advance between the first check and taking the
		// channel closed an older channel, not this one.
		if offset < l.next.Load() {
			return nil
		}
		if l.closed.Load() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// view returns next and the segment set as one consistent pair, and the
// epoch they belong to: it waits out a truncation's publish (a few atomic
// stores, no I/O) rather than mix its before and after.
func (l *Log) view() (next uint64, set *segmentSet, epoch uint64) {
	for {
		epoch = l.epoch.Load()
		if epoch&1 == 0 {
			next, set = l.next.Load(), l.segs.Load()
			if l.epoch.Load() == epoch {
				return next, set, epoch
			}
		}
		runtime.Gosched()
	}
}

// Bounds returns the lowest stored offset and the next offset to be written;
// lowest == next when the log holds no records.
func (l *Log) Bounds() (lowest, next uint64) {
	next, set, _ := l.view()
	return set.segs[0].base, next
}

// Stats reports offsets, store bytes and segment count.
func (l *Log) Stats() Stats {
	next, set, _ := l.view()
	return Stats{Lowest: set.segs[0].base, Next: next, SizeBytes: l.sizeBytes.Load(), Segments: len(set.segs)}
}

// Read returns the record at offset.
func (l *Log) Read(ctx context.Context, offset uint64) (Record, error) {
	recs, err := l.ReadBatch(ctx, offset, 1, 0, nil)
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// ReadBatch appends to dst up to maxRecords records (at least 1) and about
// maxBytes of values (no byte limit when maxBytes <= 0) starting at offset,
// always at least one record if offset is in range. A batch never spans
// segments, so it may hold fewer records than asked for. Readers never wait
// for the writer; a read only waits for the disk, and ctx is checked
// before each attempt.
func (l *Log) ReadBatch(ctx context.Context, offset uint64, maxRecords, maxBytes int, dst []Record) ([]Record, error) {
	return l.readBatch(ctx, offset, maxRecords, maxBytes, dst, nil)
}

// readBatch is ReadBatch into fresh memory, or with mem set into mem's
// (segment.read).
func (l *Log) readBatch(ctx context.Context, offset uint64, maxRecords, maxBytes int, dst []Record, mem *Batch) ([]Record, error) {
	return readSegment(l, ctx, offset, dst, func(s *segment, limit uint64, dst []Record) ([]Record, error) {
		return s.read(offset, max(maxRecords, 1), maxBytes, dst, limit, maxRecordLimit, mem)
	})
}

// Batch is the records of one read and the memory they point into, for a
// reader that is done with each batch before it reads the next (a
// consumer's stream encoding them into its response): ReadInto reuses that
// memory, where ReadBatch allocates it anew for every batch so that its
// records may be kept. The zero Batch is ready to use.
type Batch struct {
	// Records are valid until the Batch is read into again.
	Records []Record
	buf     []byte   // the frames the records point into
	slab    []Header // their headers
}

// maxKeptBatchBytes bounds the frames a Batch keeps its memory for: a
// batch of larger records (up to the record limit) is read into memory of
// its own, which the collector takes back.
const maxKeptBatchBytes = 4 << 20

// ReadInto is ReadBatch into b: it replaces b.Records, and their bytes and
// headers reuse the memory of b's previous batch.
func (l *Log) ReadInto(ctx context.Context, offset uint64, maxRecords, maxBytes int, b *Batch) error {
	if cap(b.buf) > maxKeptBatchBytes {
		b.buf = nil
		clear(b.Records) // records past the next batch's would keep it
	}
	var err error
	b.Records, err = l.readBatch(ctx, offset, maxRecords, maxBytes, b.Records[:0], b)
	return err
}

// readSegment appends to dst what read appends from the segment that holds
// offset, given the end of the records visible there (limit). A segment
// deleted before the read, or a truncation during it (which may have cut
// or rewritten the bytes read), makes it try again on a fresh view.
func readSegment[T any](l *Log, ctx context.Context, offset uint64, dst []T, read func(s *segment, limit uint64, dst []T) ([]T, error)) ([]T, error) {
	if l.closed.Load() {
		return dst, ErrClosed
	}
	for range 3 {
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		next, set, epoch := l.view()
		segs := set.segs
		if offset < segs[0].base || offset >= next {
			return dst, &RangeError{Offset: offset, Lowest: segs[0].base, Next: next}
		}
		i := set.holding(offset)
		s := segs[i]
		limit := next
		if i+1 < len(segs) {
			limit = min(limit, segs[i+1].base)
		}
		if !s.acquire() {
			if l.closed.Load() {
				return dst, ErrClosed
			}
			continue // deleted meanwhile; the fresh set says what is left
		}
		out, err := read(s, limit, dst)
		s.release()
		if l.epoch.Load() != epoch {
			clear(out[len(dst):])
			continue
		}
		return out, err
	}
	lowest, next := l.Bounds()
	return dst, &RangeError{Offset: offset, Lowest: lowest, Next: next}
}

func (l *Log) syncLoop(ctx context.Context) {
	t := time.NewTicker(l.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.flushMu.Lock()
		set := l.segs.Load()
		if s := set.segs[len(set.segs)-1]; s.dirty && l.flushErr == nil {
			if err := l.fdatasync(s); err != nil {
				l.fail("periodic fdatasync", err)
			}
		}
		l.flushMu.Unlock()
	}
}

// Close flushes queued records, fdatasyncs the active segment (whatever the
// policy), stops background work and releases the files. Idempotent; Wait
// calls return ErrClosed.
func (l *Log) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed.Load() {
		return l.closeErr
	}
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.stop()
	l.wg.Wait()

	var errs []error
	l.flushMu.Lock()
	// Appends queued before closing was set are flushed (and their waiters
	// woken) here, after the committer has stopped.
	if err := l.flushPending(true); err != nil {
		errs = append(errs, err)
	} else if l.flushErr == nil {
		set := l.segs.Load()
		if s := set.segs[len(set.segs)-1]; s.dirty {
			if err := l.fdatasync(s); err != nil {
				errs = append(errs, fmt.Errorf("logstore: %w", err))
			}
		}
	}
	if l.flushErr == nil {
		l.flushErr = ErrClosed
	}
	l.closed.Store(true)
	for _, s := range l.segs.Load().segs {
		s.release()
	}
	l.flushMu.Unlock()

	l.m.unregister()
	errs = append(errs, l.dirFile.Close())
	l.waitMu.Lock()
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	l.waitMu.Unlock()
	l.closeErr = errors.Join(errs...)
	return l.closeErr
}

// Reopen closes a log that failed (a write or fdatasync error: appends
// return ErrFailed) and opens its directory again with the same
// configuration, cutting whatever the failed write left on disk past the
// records acknowledged before it, so the reopened log holds exactly what
// its appenders were told. The caller uses the returned log in place of
// l (a Raft log after a full disk was freed).
func (l *Log) Reopen() (*Log, error) {
	_, stored := l.Bounds() // advanced only by flushes that succeeded
	if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
		l.logger.Warn("logstore: closing the failed log", "dir", l.dir, "err", err)
	}
	n, err := Open(l.dir, l.cfg)
	if err != nil {
		return nil, fmt.Errorf("logstore: reopen %s: %w", l.dir, err)
	}
	if _, next := n.Bounds(); next > stored {
		if err := n.TruncateFrom(stored); err != nil {
			n.Close()
			return nil, fmt.Errorf("logstore: reopen %s: cut the failed write: %w", l.dir, err)
		}
	}
	return n, nil
}

// Bases returns the first offset of each segment, oldest first: the
// boundaries TruncateBefore deletes at.
func (l *Log) Bases() []uint64 {
	segs := l.segs.Load().segs
	bases := make([]uint64, len(segs))
	for i, s := range segs {
		bases[i] = s.base
	}
	return bases
}
