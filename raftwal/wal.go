package raftwal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/logstore"
)

// Config configures a WAL.
type Config struct {
	// Dir holds the WAL's segments.
	Dir string
	// Root is the directory the logs' directories are under: a log's name
	// is its directory relative to Root (see Open).
	Root string
	// SegmentBytes is the size at which a segment is sealed; default 64 MiB.
	SegmentBytes int64
	// CompactEvery is how often the WAL looks for segments to delete and
	// idle logs to move forward, besides after every truncation; default 10 s.
	CompactEvery time.Duration
	// Logger receives reports; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, gets the segments' metrics (fsync latency).
	Registerer prometheus.Registerer
}

// WAL is one write-ahead log shared by many Raft logs (Open): every log's
// entries and truncations are records of one logstore.Log, synced together.
type WAL struct {
	cfg    Config
	logger *slog.Logger

	// physMu guards phys: every append and read holds it for reading,
	// Recover for writing while it reopens a failed log.
	physMu sync.RWMutex
	phys   *logstore.Log

	// inFlight counts the appends whose record may be durable but not yet
	// applied to its log's state, by the WAL's next offset when each
	// began: compaction must not delete from there on.
	flightMu sync.Mutex
	inFlight map[uint64]int

	mu     sync.Mutex // guards logs and closed
	logs   map[key]*Log
	closed bool

	compact chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" || c.Root == "" {
		return c, errors.New("raftwal: Config.Dir and Config.Root are required")
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.CompactEvery == 0 {
		c.CompactEvery = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// dropBehind is how much of the WAL's end stays in the page cache once
// synced (logstore.Config.DropBehind): a group reads its entries back to
// replicate them to a follower behind its Raft log cache, and compaction
// and replay read older records, which may come from the disk.
const dropBehind = 8 << 20

func (c Config) storeConfig() logstore.Config {
	return logstore.Config{
		Sync:            logstore.SyncAlways,
		DropBehind:      dropBehind,
		MaxRecordBytes:  1 << 30,
		MaxSegmentBytes: c.SegmentBytes,
		Logger:          c.Logger,
		Registerer:      c.Registerer,
	}
}

// OpenWAL opens (or creates) the WAL in cfg.Dir and replays its records
// into the states of the logs they belong to.
func OpenWAL(cfg Config) (*WAL, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	phys, err := logstore.Open(cfg.Dir, cfg.storeConfig())
	if err != nil {
		return nil, fmt.Errorf("raftwal: open %s: %w", cfg.Dir, err)
	}
	w := &WAL{
		cfg: cfg, logger: cfg.Logger, phys: phys, logs: map[key]*Log{}, inFlight: map[uint64]int{},
		compact: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := w.replay(); err != nil {
		phys.Close()
		return nil, err
	}
	go w.compactLoop()
	return w, nil
}

// replay reads every record, oldest first, into its log's state. It reads
// each record's head only: the state needs a record's header and size, not
// the entry's bytes, which Raft reads (and the frame's CRC checks) when it
// needs them. A header is trusted on its own checksum, or on the frame's
// when logstore read the frame whole; a record of the format before header
// checksums whose frame was not read is read whole.
func (w *WAL) replay() error {
	ctx := context.Background()
	lowest, next := w.phys.Bounds()
	var (
		heads []logstore.Head
		recs  []logstore.Record
	)
	for at := lowest; at < next; {
		var err error
		heads, err = w.phys.ReadHeads(ctx, at, 1024, maxHeaderBytes, heads[:0])
		for _, h := range heads {
			rec, checked, derr := decodeHead(h.Prefix, h.ValueLen)
			if derr == nil && !checked && !h.Checked {
				if recs, derr = w.phys.ReadBatch(ctx, h.Offset, 1, 0, recs[:0]); derr == nil {
					rec, derr = decode(recs[0].Value)
				}
			}
			if derr != nil {
				return fmt.Errorf("raftwal: %s record %d: %w", w.cfg.Dir, h.Offset, derr)
			}
			w.logFor(rec.key).apply(rec, h.Offset, int64(h.ValueLen))
		}
		at += uint64(len(heads))
		if err != nil {
			return fmt.Errorf("raftwal: replay %s at record %d: %w", w.cfg.Dir, at, err)
		}
	}
	return nil
}

// logFor returns the log of k, creating an empty one. Caller holds mu or
// owns w alone (replay).
func (w *WAL) logFor(k key) *Log {
	l, ok := w.logs[k]
	if !ok {
		l = &Log{w: w, key: k}
		w.logs[k] = l
	}
	return l
}

// Open returns the log of directory dir (under Config.Root), which Raft
// reads and writes as its log store's entries: what it held when the WAL
// was last closed, or nothing. The directory's incarnation file
// (Incarnation) tells its logs apart from those of a directory of the same
// name that was removed: a removed directory's records are ignored and
// its segments deleted.
func (w *WAL) Open(dir string) (*Log, error) {
	k, err := w.keyOf(dir, Incarnation)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, logstore.ErrClosed
	}
	l := w.logFor(k)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open {
		return nil, fmt.Errorf("raftwal: the log of %s is open already", dir)
	}
	l.open = true
	return l, nil
}

// append writes records, consecutively, and waits until they are durable
// (with whatever other logs' records went in the same write: one
// fdatasync for all). It returns the first one's offset, and a function
// to call once the records are applied to their log's state (until then
// compaction keeps them).
func (w *WAL) append(recs [][]byte) (uint64, func(), error) {
	w.physMu.RLock()
	defer w.physMu.RUnlock()
	w.flightMu.Lock()
	_, start := w.phys.Bounds()
	w.inFlight[start]++
	w.flightMu.Unlock()
	applied := func() {
		w.flightMu.Lock()
		if w.inFlight[start]--; w.inFlight[start] == 0 {
			delete(w.inFlight, start)
		}
		w.flightMu.Unlock()
	}
	at, err := w.phys.AppendBatch(context.Background(), recs)
	if err != nil {
		applied()
		return 0, nil, err
	}
	return at, applied, nil
}

// read returns the record at offset at.
func (w *WAL) read(at uint64) ([]byte, error) {
	w.physMu.RLock()
	defer w.physMu.RUnlock()
	r, err := w.phys.Read(context.Background(), at)
	return r.Value, err
}

// Recover reopens the WAL after a failed write (a full disk) made it refuse
// appends, and cuts whatever the failed write left past the last record it
// stored, so the WAL holds exactly what its logs were told it holds. It
// does nothing when the WAL has not failed.
func (w *WAL) Recover() error {
	w.physMu.Lock()
	defer w.physMu.Unlock()
	if err := w.phys.Sync(); err == nil || errors.Is(err, logstore.ErrClosed) {
		return nil // not failed (or closed: nothing to recover)
	}
	phys, err := w.phys.Reopen()
	if err != nil {
		return fmt.Errorf("raftwal: %w", err)
	}
	w.phys = phys
	return nil
}

// Stats describes the WAL's segments.
func (w *WAL) Stats() logstore.Stats {
	w.physMu.RLock()
	defer w.physMu.RUnlock()
	return w.phys.Stats()
}

// Close stops the WAL; its logs must be closed first.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	w.physMu.Lock()
	defer w.physMu.Unlock()
	return w.phys.Close()
}

// kick asks the compactor to look at the WAL soon.
func (w *WAL) kick() {
	select {
	case w.compact <- struct{}{}:
	default:
	}
}

func (w *WAL) compactLoop() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.CompactEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.compact:
		case <-t.C:
		}
		if err := w.Compact(); err != nil {
			w.logger.Warn("raftwal: compaction", "dir", w.cfg.Dir, "err", err)
		}
	}
}

// Compact deletes the segments no log needs any more. Logs whose directory
// is gone (or holds a new incarnation) are forgotten first. Then, while the
// oldest segment is held only by logs of little live data (idle groups
// whose few entries Raft keeps after its snapshots), or by any logs while
// more than half of the WAL is records no log needs, those logs' entries
// are written again at the end of the WAL so the segment can go: one idle
// group must not keep every segment after its last entry on disk.
func (w *WAL) Compact() error {
	w.forgetRemoved()
	for range 64 { // bounded: each round moves the logs holding the oldest segment
		moved, err := w.compactOnce()
		if err != nil || !moved {
			return err
		}
	}
	return nil
}

// relocateMax bounds the live data of a log that Compact writes again: a
// busy log moves its own oldest entries out as Raft compacts it.
func (w *WAL) relocateMax() int64 { return w.cfg.SegmentBytes / 8 }

// compactOnce deletes the segments below the oldest record any log needs,
// then, when the WAL has more than two segments, moves the small logs that
// hold its oldest segment. It reports whether it moved any.
func (w *WAL) compactOnce() (bool, error) {
	// The floor first, then the logs: an append that began after the
	// floor was read writes above it, one still in flight is in inFlight,
	// one done is in its log's pin.
	w.physMu.RLock()
	_, floor := w.phys.Bounds()
	w.physMu.RUnlock()
	w.flightMu.Lock()
	for start := range w.inFlight {
		floor = min(floor, start)
	}
	w.flightMu.Unlock()
	// What each log needs, read once: its oldest record and its size.
	type need struct {
		l    *Log
		at   uint64
		live int64
	}
	w.mu.Lock()
	needs := make([]need, 0, len(w.logs))
	for _, l := range w.logs {
		l.mu.RLock()
		if at, ok := l.st.pin(); ok {
			needs = append(needs, need{l, at, l.st.liveBytes()})
		}
		l.mu.RUnlock()
	}
	w.mu.Unlock()
	pin, live := floor, int64(0)
	for _, n := range needs {
		pin, live = min(pin, n.at), live+n.live
	}
	w.physMu.RLock()
	err := w.phys.TruncateBefore(pin)
	bases := w.phys.Bases()
	size := w.phys.Stats().SizeBytes
	w.physMu.RUnlock()
	if err != nil || len(bases) <= 2 || len(needs) == 0 {
		return false, err
	}
	// The logs holding records in the oldest segment: if they all hold
	// little, or the WAL is mostly records no log needs (a log that went
	// idle after a burst keeps its trailing entries, which Raft compacts
	// only after its next snapshot), write their entries again so the
	// segment can go. Copying is then paid for by at least as much space
	// freed.
	mostlyDead := size > 2*live+2*w.cfg.SegmentBytes
	var movers []*Log
	for _, n := range needs {
		if n.at < bases[1] {
			if !mostlyDead && n.live > w.relocateMax() {
				return false, nil // a busy log holds it; its snapshots will move it
			}
			movers = append(movers, n.l)
		}
	}
	for _, l := range movers {
		if err := l.relocate(); err != nil {
			return false, err
		}
	}
	return len(movers) > 0, nil
}

// forgetRemoved forgets the logs that are not open and whose directory no
// longer exists or holds another incarnation: their group was removed.
func (w *WAL) forgetRemoved() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, l := range w.logs {
		if l.isOpen() {
			continue
		}
		inc, err := readIncarnation(filepath.Join(w.cfg.Root, k.name))
		if errors.Is(err, os.ErrNotExist) || (err == nil && inc != k.inc) {
			delete(w.logs, k)
		}
	}
}

// Dir is the directory of the WAL's segments.
func (w *WAL) Dir() string { return w.cfg.Dir }

// keyOf names the log of directory dir, with dir's incarnation as inc
// gives it (Incarnation creates one, readIncarnation does not).
func (w *WAL) keyOf(dir string, inc func(dir string) (uint64, error)) (key, error) {
	name, err := filepath.Rel(w.cfg.Root, dir)
	if err != nil || !filepath.IsLocal(name) {
		return key{}, fmt.Errorf("raftwal: %s is not under %s", dir, w.cfg.Root)
	}
	n, err := inc(dir)
	return key{name: name, inc: n}, err
}

// Holds reports whether the WAL holds entries of directory dir's log (of
// its current incarnation).
func (w *WAL) Holds(dir string) bool {
	k, err := w.keyOf(dir, readIncarnation)
	if err != nil {
		return false
	}
	w.mu.Lock()
	l, ok := w.logs[k]
	w.mu.Unlock()
	if !ok {
		return false
	}
	lowest, next := l.Bounds()
	return lowest != next
}
