package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"

	"github.com/proglog/proglog/internal/atomicfile"
	"github.com/proglog/proglog/internal/bufpool"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/raftwal"
)

// raftStore is Raft's log store and stable store under <DataDir>/raft:
//
//   - the entries live in a logstore.Log (raft/log) whose record offset is
//     the entry's Raft index, one record per entry. SyncAlways: StoreLogs is
//     one write and one fdatasync for the whole batch, so an entry Raft
//     counts as stored survives a crash. Or they live in the group's log
//     in the node's shared WAL (raftwal.Log, same numbering and methods):
//     StoreLogs is a record per entry, durable before it returns; its write
//     and fdatasync are shared with the other groups storing at once.
//   - the stable store (current term, vote) is one small file (raft/stable)
//     of two fixed slots written in place, alternately: once created it
//     never needs a new disk block, so a full disk cannot fail an election
//     (hashicorp/raft panics when it cannot save the term). Raft sets it
//     on elections only.
//
// Raft deletes entries in two ways and never from the middle: a compacted
// head after a snapshot (logstore.TruncateBefore: whole segments, so a few
// entries below the compaction point may stay; Raft never reads them) and a
// conflicting tail a new leader overwrites (logstore.TruncateFrom). After
// installing a snapshot Raft compacts the head as after its own; the next
// StoreLogs, past the snapshot, restarts the log at its index
// (logstore.Reset) when the log ends before it.
//
// The store is not a raft.MonotonicLogStore. Raft would then delete every
// entry after installing a snapshot but keep its cached last index, and a
// follower that had stored entries past the snapshot refused every
// AppendEntries after it and asked for the snapshot again, forever
// (TestInstalledSnapshotThenResend).
type raftStore struct {
	// logMu guards the log pointer: every method holds it for reading,
	// recover for writing while it reopens the log after a failed write.
	logMu  sync.RWMutex
	log    entryLog
	closed bool // set by Close, under logMu: recover must not reopen then
	logDir string
	// reopen opens the log again after a failed write (logstore.Reopen, or
	// the shared WAL's Recover).
	reopen func() (entryLog, error)
	// failed is set when a write failed and the log refuses appends until
	// it is reopened (logstore.ErrFailed).
	failed atomic.Bool
	// noSpace, if set, is told of every failed write; it reports whether
	// the error was ENOSPC (the disk monitor's noteWriteErr).
	noSpace func(error) bool
	// synced, if set, is told of every write and fdatasync of entries
	// (first to last index) that succeeded, and when it started and ended:
	// the fsync spans of traced appends (appendTracing).
	synced func(first, last uint64, start, end time.Time)
	// snapshotted, if set, gives the index and term of the newest snapshot
	// Raft has applied (ok false when there is none): GetLog answers for
	// that entry once the log no longer holds it (snapshotEntry).
	snapshotted func() (index, term uint64, ok bool)

	// mu guards the stable store: its map, file and slot sequence.
	mu         sync.Mutex
	stable     map[string][]byte
	stablePath string
	stableFile *os.File // open for writing the slots in place
	stableSeq  uint64   // the sequence number of the newest valid slot
}

// entryLog is where a raftStore keeps its entries, numbered by Raft
// index: a logstore.Log of the group's own (one record per entry) or the
// group's log in the node's shared WAL (raftwal.Log).
type entryLog interface {
	Bounds() (lowest, next uint64)
	AppendBatch(ctx context.Context, values [][]byte) (uint64, error)
	Read(ctx context.Context, index uint64) (logstore.Record, error)
	ReadBatch(ctx context.Context, index uint64, maxRecords, maxBytes int, dst []logstore.Record) ([]logstore.Record, error)
	Reset(next uint64) error
	TruncateFrom(index uint64) error
	TruncateBefore(index uint64) error
	Close() error
}

var (
	_ entryLog = (*logstore.Log)(nil)
	_ entryLog = (*raftwal.Log)(nil)
)

// raftLogDirName and stableFileName are under <DataDir>/raft.
const (
	raftLogDirName = "log"
	stableFileName = "stable"
	// legacyRaftDB is where proglog versions before the logstore-backed
	// Raft log kept Raft's state (bbolt).
	legacyRaftDB = "raft.db"
)

// errKeyNotFound must read exactly "not found": hashicorp/raft compares the
// stable store's error text to tell a missing key from a failure.
var errKeyNotFound = errors.New("not found")

// raftLogDropBehind is how much of the end of Raft's log stays in the page
// cache once synced (logstore.Config.DropBehind): hashicorp/raft reads an
// entry back only to replicate it, from its log cache or, for a follower
// further behind, from here; older pages would sit in memory unread.
const raftLogDropBehind = 8 << 20

// raftStoreConfig is the logstore configuration of Raft's log: every entry
// is synced before StoreLogs returns and an entry may be a whole batch.
func raftStoreConfig(segmentBytes int64, logger *slog.Logger) logstore.Config {
	return logstore.Config{
		Sync:            logstore.SyncAlways,
		DropBehind:      raftLogDropBehind,
		MaxRecordBytes:  1 << 30,
		MaxSegmentBytes: segmentBytes,
		Logger:          logger,
	}
}

func openRaftStore(dir string, cfg logstore.Config) (*raftStore, error) {
	return openRaftStoreIn(dir, cfg, nil, false)
}

// openRaftStoreIn opens the group's Raft state under dir. Its entries stay
// where they are: in a Raft log of its own that holds entries, or in wal
// (when set) if it holds the group's entries; a group with no entries yet
// keeps them in wal, unless preferOwn or wal is nil (an empty log of its
// own is then removed).
func openRaftStoreIn(dir string, cfg logstore.Config, wal *raftwal.WAL, preferOwn bool) (*raftStore, error) {
	if _, err := os.Stat(filepath.Join(dir, legacyRaftDB)); err == nil {
		return nil, fmt.Errorf("%w: %s was written by an older proglog (Raft state in bbolt); this version keeps Raft's log in %s: start the node from an empty data directory and let it catch up from the cluster",
			ErrOldRaftState, filepath.Join(dir, legacyRaftDB), filepath.Join(dir, raftLogDirName))
	}
	s := &raftStore{stablePath: filepath.Join(dir, stableFileName), logDir: filepath.Join(dir, raftLogDirName)}
	var err error
	if s.stable, s.stableFile, s.stableSeq, err = openStable(s.stablePath); err != nil {
		return nil, err
	}
	// The group's own log is opened if there is one, or if it is to hold
	// the entries; it holds them unless it is empty and wal is to.
	var own *logstore.Log
	_, serr := os.Stat(s.logDir)
	if wal == nil || serr == nil || (preferOwn && !wal.Holds(dir)) {
		if own, err = logstore.Open(s.logDir, cfg); err != nil {
			s.stableFile.Close()
			if errors.Is(err, logstore.ErrCorrupt) {
				return nil, raftLogCorrupt(s.logDir, 0, err)
			}
			return nil, fmt.Errorf("open raft log: %w", err)
		}
	}
	if wal != nil && (own == nil || (empty(own) && (!preferOwn || wal.Holds(dir)))) {
		if own != nil {
			err := own.Close()
			if err == nil {
				err = os.RemoveAll(s.logDir)
			}
			if err != nil {
				s.stableFile.Close()
				return nil, fmt.Errorf("cluster: remove the empty raft log %s: %w", s.logDir, err)
			}
		}
		wl, err := wal.Open(dir)
		if err != nil {
			s.stableFile.Close()
			return nil, fmt.Errorf("cluster: open raft log: %w", err)
		}
		s.log, s.logDir = wl, wal.Dir()
		s.reopen = func() (entryLog, error) { return wl, wal.Recover() }
		return s, nil
	}
	s.log = own
	s.reopen = func() (entryLog, error) { return s.log.(*logstore.Log).Reopen() }
	return s, nil
}

func empty(l *logstore.Log) bool {
	lowest, next := l.Bounds()
	return lowest == next
}

// verify reads every entry from index from to the last one and checks it
// (the logstore checks each frame's CRC, length and offset; the entry must
// decode and name its own index). hashicorp/raft panics when GetLog fails
// for an entry it reads while it starts (raft.NewRaft replays the entries
// after the latest snapshot for configuration changes, then the FSM applies
// them), so New calls this first, with from just past the latest snapshot,
// and a damaged entry becomes a *RaftLogCorruptError instead of a panic. It
// reads what raft is about to read anyway, sequentially and without
// decoding the data, and leaves it in the page cache for raft.
func (s *raftStore) verify(from uint64) error {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	lowest, next := s.log.Bounds()
	if lowest == next {
		return nil
	}
	from = min(max(from, lowest), next-1) // raft always reads the last entry
	var recs []logstore.Record
	for i := from; i < next; {
		var err error
		recs, err = s.log.ReadBatch(context.Background(), i, 256, 4<<20, recs[:0])
		for _, r := range recs {
			if ierr := checkRaftLog(r.Value, r.Offset); ierr != nil {
				return raftLogCorrupt(s.logDir, r.Offset, ierr)
			}
		}
		i += uint64(len(recs))
		if err != nil {
			if errors.Is(err, logstore.ErrCorrupt) {
				return raftLogCorrupt(s.logDir, i, err)
			}
			return fmt.Errorf("cluster: check raft log entry %d: %w", i, err)
		}
	}
	return nil
}

func (s *raftStore) Close() error {
	s.mu.Lock()
	serr := s.stableFile.Close()
	s.mu.Unlock()
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.closed = true
	if err := s.log.Close(); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("cluster: stable store: %w", serr)
	}
	return nil
}

// FirstIndex returns the lowest stored index, 0 when there is none.
func (s *raftStore) FirstIndex() (uint64, error) {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	lowest, next := s.log.Bounds()
	if lowest == next {
		return 0, nil
	}
	return lowest, nil
}

// LastIndex returns the highest stored index, 0 when there is none.
func (s *raftStore) LastIndex() (uint64, error) {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	lowest, next := s.log.Bounds()
	if lowest == next {
		return 0, nil
	}
	return next - 1, nil
}

func (s *raftStore) GetLog(index uint64, log *raft.Log) error {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	rec, err := s.log.Read(context.Background(), index)
	if errors.Is(err, logstore.ErrOutOfRange) {
		return s.snapshotEntry(index, log)
	}
	if errors.Is(err, logstore.ErrCorrupt) {
		return raftLogCorrupt(s.logDir, index, err)
	}
	if err != nil {
		return fmt.Errorf("cluster: raft log entry %d: %w", index, err)
	}
	if err := decodeRaftLog(rec.Value, log); err != nil {
		return raftLogCorrupt(s.logDir, index, err)
	}
	if log.Index != index {
		return raftLogCorrupt(s.logDir, index, fmt.Errorf("%w: holds index %d", ErrCorruptEntry, log.Index))
	}
	return nil
}

// snapshotEntry answers for the last entry of the newest snapshot Raft has
// applied when the log holds nothing at or below it (compacted, or
// restarted past an installed snapshot): the entry's index and term, which
// the snapshot vouches for, and no command. hashicorp/raft's follower reads
// the entry before a leader's new ones from the log store unless it is its
// last entry, so after storing the entries past an installed snapshot it
// refused a resend of them (the connection dropped before the leader heard
// back) and asked for the snapshot again, without end. Raft never applies
// or sends this entry: it applies past the snapshot, and a leader names the
// entry before its new ones from its snapshot and reads only entries it
// holds after an entry it holds.
func (s *raftStore) snapshotEntry(index uint64, log *raft.Log) error {
	if s.snapshotted == nil {
		return raft.ErrLogNotFound
	}
	if lowest, next := s.log.Bounds(); lowest != next && index >= lowest {
		return raft.ErrLogNotFound // past the end: the log holds what is below
	}
	at, term, ok := s.snapshotted()
	if !ok || at != index {
		return raft.ErrLogNotFound
	}
	*log = raft.Log{Index: index, Term: term, Type: raft.LogNoop}
	return nil
}

func (s *raftStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs appends the entries, which Raft gives with consecutive indexes,
// with one write and one fdatasync. An entry at or below the last index
// replaces it and everything after it (a conflicting tail); an entry past
// the end restarts the log there (the first entry after an installed
// snapshot, if a crash came before Raft deleted the older entries).
func (s *raftStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	err := s.storeLogs(logs)
	if err == nil {
		return nil
	}
	if errors.Is(err, logstore.ErrFailed) {
		s.failed.Store(true)
	}
	if s.noSpace != nil && s.noSpace(err) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

func (s *raftStore) storeLogs(logs []*raft.Log) error {
	for i, l := range logs[1:] {
		if l.Index != logs[i].Index+1 {
			return fmt.Errorf("cluster: StoreLogs: index %d follows %d", l.Index, logs[i].Index)
		}
	}
	first := logs[0].Index
	lowest, next := s.log.Bounds()
	switch {
	case first == next:
	case lowest == next || first > next || first < lowest:
		if err := s.log.Reset(first); err != nil {
			return fmt.Errorf("cluster: restart raft log at %d: %w", first, err)
		}
	default: // lowest <= first < next
		if err := s.log.TruncateFrom(first); err != nil {
			return fmt.Errorf("cluster: replace raft log from %d: %w", first, err)
		}
	}
	// The entries are encoded into one pooled buffer: AppendBatch copies
	// them into the log's own before it returns.
	size := 0
	for _, l := range logs {
		size += raftLogSize(l)
	}
	scratch := scratchPool.Get(size)
	defer scratchPool.Put(scratch)
	values := make([][]byte, len(logs))
	b := (*scratch)[:0]
	for i, l := range logs {
		start := len(b)
		b = appendRaftLog(b, l)
		values[i] = b[start:]
	}
	var start time.Time
	if s.synced != nil {
		start = time.Now()
	}
	got, err := s.log.AppendBatch(context.Background(), values)
	if err != nil {
		return fmt.Errorf("cluster: store raft entries %d..%d: %w", first, logs[len(logs)-1].Index, err)
	}
	if got != first {
		return fmt.Errorf("cluster: raft entry %d stored at %d: %w", first, got, ErrCorruptEntry)
	}
	if s.synced != nil {
		s.synced(first, logs[len(logs)-1].Index, start, time.Now())
	}
	return nil
}

// recover reopens the log after a failed write (a full disk) made it
// refuse appends, and cuts whatever the failed write left past the last
// entry it stored (whole frames of a partial write that were never
// acknowledged to raft), so the log holds exactly what raft was told it
// holds. If reopening fails the old, closed log stays in place, reads of
// it fail, and the next call tries again.
func (s *raftStore) recover() error {
	if !s.failed.Load() {
		return nil
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	l, err := s.reopen()
	if err != nil {
		return fmt.Errorf("cluster: reopen raft log: %w", err)
	}
	s.log = l
	s.failed.Store(false)
	return nil
}

// DeleteRange removes the entries min..max inclusive: a compacted head
// after a snapshot, a conflicting tail a new leader overwrites, or all of
// them after a snapshot was installed.
func (s *raftStore) DeleteRange(min, max uint64) error {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	err := s.deleteRange(min, max)
	if errors.Is(err, logstore.ErrFailed) {
		s.failed.Store(true)
		if s.noSpace != nil {
			s.noSpace(err)
		}
	}
	return err
}

func (s *raftStore) deleteRange(min, max uint64) error {
	lowest, next := s.log.Bounds()
	if lowest == next || min > max || min >= next || max < lowest {
		return nil // nothing stored in the range
	}
	switch {
	case min <= lowest && max >= next-1:
		// Everything: keep the numbering, so the next entry Raft stores
		// (max+1 after a snapshot) follows without a gap.
		return s.log.Reset(max + 1)
	case min <= lowest:
		return s.log.TruncateBefore(max + 1)
	case max >= next-1:
		return s.log.TruncateFrom(min)
	}
	return fmt.Errorf("cluster: DeleteRange(%d, %d) would leave a hole in %d..%d", min, max, lowest, next-1)
}

func (s *raftStore) Set(key, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	updated := make(map[string][]byte, len(s.stable)+1)
	for k, v := range s.stable {
		updated[k] = v
	}
	updated[string(key)] = slices.Clone(val)
	if err := writeStableSlot(s.stableFile, s.stableSeq+1, updated); err != nil {
		return fmt.Errorf("cluster: stable store %s: %w", s.stablePath, err)
	}
	s.stable, s.stableSeq = updated, s.stableSeq+1
	return nil
}

func (s *raftStore) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.stable[string(key)]
	if !ok {
		return nil, errKeyNotFound
	}
	return slices.Clone(v), nil
}

func (s *raftStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

func (s *raftStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("cluster: stable key %q holds %d bytes, want 8: %w", key, len(v), ErrCorruptEntry)
	}
	return binary.BigEndian.Uint64(v), nil
}

// The stable store's contents, little endian (format 1):
//
//	0   8  magic "PLSTABL1"
//	8   4  number of keys n
//	    n times: 4 key length k, k key, 4 value length v, v value (keys in
//	    strictly increasing order)
//	    4  CRC32C of everything before it
//
// Format 1 was the whole file, replaced by a rename on every Set; the
// rename needs new blocks, so on a full disk it failed and hashicorp/raft
// panicked ("failed to save current term"). Format 2, the file now, is two
// slots of stableSlotSize bytes, each holding a whole copy:
//
//	0   8  magic "PLSTSLOT"
//	8   8  sequence number, from 1, one more on every Set
//	16  4  length b of the body
//	20  4  CRC32C of bytes 0..19 followed by the body
//	24  b  body: the contents in format 1
//	       zeros up to stableSlotSize
//
// Set writes the next sequence number into the slot that does not hold
// the newest one, in place (the file never changes size), and fdatasyncs.
// A crash during the write can tear only that slot, which then fails its
// CRC, and the other slot, the state before the Set, is read: the newest
// valid slot wins. The file is created whole (both slots, the unused one
// zero) through a temporary file, fsync and rename; a format 1 file found
// on open is converted the same way.
const (
	stableMagic     = "PLSTABL1"
	stableSlotMagic = "PLSTSLOT"
	// stableSlotSize is one slot: a page, so writing one slot never
	// touches the other's page. Raft keeps three short keys in it.
	stableSlotSize       = 4096
	stableSlotHeaderSize = 24
)

func encodeStable(m map[string][]byte) []byte {
	b := append([]byte(nil), stableMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m[k])))
		b = append(b, m[k]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeStable(b []byte) (map[string][]byte, error) {
	if len(b) < len(stableMagic)+8 || string(b[:len(stableMagic)]) != stableMagic {
		return nil, fmt.Errorf("%w: stable store: bad header", ErrCorruptEntry)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: stable store: checksum mismatch", ErrCorruptEntry)
	}
	rest := body[len(stableMagic):]
	n := binary.LittleEndian.Uint32(rest)
	rest = rest[4:]
	m := make(map[string][]byte)
	var prev []byte
	field := func() ([]byte, bool) {
		if len(rest) < 4 {
			return nil, false
		}
		l := uint64(binary.LittleEndian.Uint32(rest))
		if l > uint64(len(rest)-4) {
			return nil, false
		}
		f := rest[4 : 4+l]
		rest = rest[4+l:]
		return f, true
	}
	for range n {
		k, ok := field()
		if !ok {
			return nil, fmt.Errorf("%w: stable store: truncated key", ErrCorruptEntry)
		}
		if len(m) > 0 && string(k) <= string(prev) {
			return nil, fmt.Errorf("%w: stable store: key %q out of order", ErrCorruptEntry, k)
		}
		prev = k
		v, ok := field()
		if !ok {
			return nil, fmt.Errorf("%w: stable store: truncated value of %q", ErrCorruptEntry, k)
		}
		m[string(k)] = slices.Clone(v)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: stable store: %d bytes after the keys", ErrCorruptEntry, len(rest))
	}
	return m, nil
}

// encodeStableSlot returns one whole slot (stableSlotSize bytes).
func encodeStableSlot(seq uint64, m map[string][]byte) ([]byte, error) {
	body := encodeStable(m)
	if len(body) > stableSlotSize-stableSlotHeaderSize {
		return nil, fmt.Errorf("stable store: %d bytes do not fit a %d-byte slot", len(body), stableSlotSize-stableSlotHeaderSize)
	}
	b := make([]byte, stableSlotSize)
	copy(b, stableSlotMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(body)))
	copy(b[stableSlotHeaderSize:], body)
	crc := crc32.Update(crc32.Checksum(b[:20], castagnoli), castagnoli, body)
	binary.LittleEndian.PutUint32(b[20:], crc)
	return b, nil
}

// decodeStableSlot decodes one slot; seq 0 means it holds nothing valid.
func decodeStableSlot(b []byte) (seq uint64, m map[string][]byte, err error) {
	if len(b) < stableSlotHeaderSize || string(b[:8]) != stableSlotMagic {
		return 0, nil, fmt.Errorf("%w: stable store slot: bad header", ErrCorruptEntry)
	}
	n := uint64(binary.LittleEndian.Uint32(b[16:]))
	if n > uint64(len(b)-stableSlotHeaderSize) {
		return 0, nil, fmt.Errorf("%w: stable store slot: body of %d bytes past the end", ErrCorruptEntry, n)
	}
	body := b[stableSlotHeaderSize : stableSlotHeaderSize+n]
	if crc32.Update(crc32.Checksum(b[:20], castagnoli), castagnoli, body) != binary.LittleEndian.Uint32(b[20:]) {
		return 0, nil, fmt.Errorf("%w: stable store slot: checksum mismatch", ErrCorruptEntry)
	}
	seq = binary.LittleEndian.Uint64(b[8:])
	if seq == 0 {
		return 0, nil, fmt.Errorf("%w: stable store slot: sequence number 0", ErrCorruptEntry)
	}
	if m, err = decodeStable(body); err != nil {
		return 0, nil, err
	}
	return seq, m, nil
}

// decodeStableFile returns the newest valid slot of a format 2 file.
func decodeStableFile(b []byte) (seq uint64, m map[string][]byte, err error) {
	if len(b) != 2*stableSlotSize {
		return 0, nil, fmt.Errorf("%w: stable store: %d bytes, want %d", ErrCorruptEntry, len(b), 2*stableSlotSize)
	}
	var errs []error
	for i := range 2 {
		s, sm, serr := decodeStableSlot(b[i*stableSlotSize : (i+1)*stableSlotSize])
		if serr != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, serr))
			continue
		}
		if s > seq {
			seq, m = s, sm
		}
	}
	if seq == 0 {
		return 0, nil, errors.Join(errs...)
	}
	return seq, m, nil
}

// openStable reads the stable file (a missing one is an empty store,
// which it creates; a format 1 one is converted) and opens it for Set.
func openStable(path string) (m map[string][]byte, f *os.File, seq uint64, err error) {
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, 0, fmt.Errorf("cluster: stable store: %w", err)
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m, seq = map[string][]byte{}, 1
		err = createStable(path, seq, m)
	case err != nil:
	case len(b) >= len(stableMagic) && string(b[:len(stableMagic)]) == stableMagic:
		// Format 1, from before the slots: convert it.
		if m, err = decodeStable(b); err == nil {
			seq = 1
			err = createStable(path, seq, m)
		}
	default:
		seq, m, err = decodeStableFile(b)
	}
	if err == nil {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("cluster: stable store %s: %w", path, err)
	}
	return m, f, seq, nil
}

// createStable writes a whole format 2 file holding m in seq's slot:
// a temporary file, fsynced, renamed over path, the directory fsynced.
func createStable(path string, seq uint64, m map[string][]byte) error {
	slot, err := encodeStableSlot(seq, m)
	if err != nil {
		return err
	}
	whole := make([]byte, 2*stableSlotSize)
	copy(whole[int64(seq%2)*stableSlotSize:], slot)
	if err := atomicfile.Write(path, whole, 0o600, true); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeStableSlot writes m as sequence number seq into its slot (seq
// alternates between them), in place, and fdatasyncs it.
func writeStableSlot(f *os.File, seq uint64, m map[string][]byte) error {
	slot, err := encodeStableSlot(seq, m)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(slot, int64(seq%2)*stableSlotSize); err != nil {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// A stored raft.Log, little endian:
//
//	0   1  format version, 1
//	1   1  raft.LogType
//	2   8  index
//	10  8  term
//	18  8  AppendedAt, Unix nanoseconds (0 = zero time)
//	26  4  data length d
//	30  d  data
//	    4  extensions length e
//	    e  extensions
const (
	raftLogVersion    = 1
	raftLogHeaderSize = 30
)

// ErrCorruptEntry is returned when a stored Raft entry cannot be decoded.
var ErrCorruptEntry = errors.New("cluster: corrupt raft log entry")

func encodeRaftLog(l *raft.Log) []byte {
	return appendRaftLog(make([]byte, 0, raftLogSize(l)), l)
}

// raftLogSize is the length of l's encoding.
func raftLogSize(l *raft.Log) int { return raftLogHeaderSize + len(l.Data) + 4 + len(l.Extensions) }

// appendRaftLog appends l's encoding to b.
func appendRaftLog(b []byte, l *raft.Log) []byte {
	b = append(b, raftLogVersion, byte(l.Type))
	b = binary.LittleEndian.AppendUint64(b, l.Index)
	b = binary.LittleEndian.AppendUint64(b, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(at))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Extensions)))
	return append(b, l.Extensions...)
}

// scratchPool holds the buffers StoreLogs encodes entries into, shared by
// every group's store: a buffer per store would pin its largest batch in
// each idle group.
var scratchPool = bufpool.Pool{Max: 4 << 20}

// checkRaftLog checks that b decodes as the entry at index, without
// copying anything.
func checkRaftLog(b []byte, index uint64) error {
	if _, _, err := splitRaftLog(b); err != nil {
		return err
	}
	if got := binary.LittleEndian.Uint64(b[2:]); got != index {
		return fmt.Errorf("%w: holds index %d", ErrCorruptEntry, got)
	}
	return nil
}

// splitRaftLog checks b's layout and returns the data length and the rest
// after the data (extensions length and extensions).
func splitRaftLog(b []byte) (d uint64, rest []byte, err error) {
	if len(b) < raftLogHeaderSize+4 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrCorruptEntry, len(b))
	}
	if b[0] != raftLogVersion {
		return 0, nil, fmt.Errorf("%w: version %d", ErrCorruptEntry, b[0])
	}
	d = uint64(binary.LittleEndian.Uint32(b[26:]))
	if d > uint64(len(b)-raftLogHeaderSize-4) {
		return 0, nil, fmt.Errorf("%w: data length %d past the end", ErrCorruptEntry, d)
	}
	rest = b[raftLogHeaderSize+d:]
	if e := uint64(binary.LittleEndian.Uint32(rest)); e != uint64(len(rest)-4) {
		return 0, nil, fmt.Errorf("%w: extensions length %d, %d bytes left", ErrCorruptEntry, e, len(rest)-4)
	}
	return d, rest, nil
}

// decodeRaftLog fills l from b, copying the bytes (b may be reused).
func decodeRaftLog(b []byte, l *raft.Log) error {
	d, rest, err := splitRaftLog(b)
	if err != nil {
		return err
	}
	e := uint64(len(rest) - 4)
	*l = raft.Log{
		Type:  raft.LogType(b[1]),
		Index: binary.LittleEndian.Uint64(b[2:]),
		Term:  binary.LittleEndian.Uint64(b[10:]),
	}
	if at := int64(binary.LittleEndian.Uint64(b[18:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if d > 0 {
		l.Data = append([]byte(nil), b[raftLogHeaderSize:raftLogHeaderSize+d]...)
	}
	if e > 0 {
		l.Extensions = append([]byte(nil), rest[4:]...)
	}
	return nil
}

// latestSnapshotIndex is the Raft index of the newest snapshot, 0 if there
// is none (or none can be listed: raft then fails on its own).
func latestSnapshotIndex(snaps raft.SnapshotStore) uint64 {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return 0
	}
	return list[0].Index
}
