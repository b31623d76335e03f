package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/logstore"
)

// fsm applies committed entries to the local logstore. Raft calls Apply,
// ApplyBatch, Snapshot and Restore from one goroutine (Restore also from
// NewRaft before that goroutine starts), so next and failed need no lock.
type fsm struct {
	c      *Log
	logger *slog.Logger
	w      *storeWriter
	next   uint64 // offset the next applied record gets
	// last is the time of the latest applied record, Unix nanoseconds: the
	// floor for the next one's (stamp).
	last int64
	// stored is the offset the next record handed to w gets: the store's
	// end once w has written everything queued.
	stored uint64
	failed error       // set when applying failed; the node then applies nothing more
	broken atomic.Bool // failed != nil, for metrics
	// committed is next as readers see it: records below it are committed
	// and applied, though perhaps not written to the store yet.
	committed atomic.Uint64
	// index is the Raft index of the latest entry applied here. Raft's own
	// AppliedIndex moves after raft hands a batch to the FSM goroutine, so
	// a caller whose Apply already returned may still see it behind.
	index atomic.Uint64
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)
	_ raft.FSM         = (*fsm)(nil)
)

// applyResult is the response of one command entry.
type applyResult struct {
	base uint64
	n    int
	err  error
}

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies the command entries of logs: it numbers their records
// and hands them to the store writer as one run. A replay after a restart
// finds the store cut back to where it starts (see New and Restore), so
// every record is written again, except those below the store's lowest
// offset: retention deleted them already.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if err := f.w.failure(); err != nil && f.failed == nil {
		f.fail(out, err)
	}
	if f.failed != nil {
		for i := range out {
			out[i] = applyResult{err: f.failed}
		}
		return out
	}
	lg := f.c.current().log
	lowest, _ := lg.Bounds()
	have := f.stored
	// The records to write, as runs of the decoded entries (no copy): they
	// follow each other from freshBase.
	var fresh [][]logstore.Record
	var slabs []*[]logstore.Header // fresh's header slabs
	var freshBase, freshEnd uint64
	for i, e := range logs {
		f.c.applied(len(e.Data))
		if e.Type != raft.LogCommand {
			continue
		}
		if at, cmd, ok := decodeMeta(e.Data); ok {
			out[i] = f.applyMeta(e.Index, at, cmd)
			continue
		}
		entry, err := decodeEntry(e.Data)
		if err != nil {
			// Every node decodes the same committed bytes the same way, so a
			// malformed entry adds no records anywhere.
			out[i] = applyResult{err: fmt.Errorf("raft entry %d: %w", e.Index, err)}
			continue
		}
		at := f.stamp(entry.at, e.AppendedAt)
		values := entry.recs
		base := f.next
		out[i] = applyResult{base: base, n: len(values)}
		first := len(values) // the first record to write
		for j := range values {
			off := base + uint64(j)
			if off < have {
				if off >= lowest {
					return f.fail(out, fmt.Errorf("%w: raft entry %d carries offset %d but the local log already holds it", logstore.ErrCorrupt, e.Index, off))
				}
				continue // retention deleted it already
			}
			if first == len(values) {
				first = j
				end := freshEnd
				if len(fresh) == 0 {
					end = have
					freshBase, freshEnd = off, off
				}
				if off != end {
					return f.fail(out, fmt.Errorf("%w: raft entry %d carries offset %d but the local log ends at %d", logstore.ErrCorrupt, e.Index, off, end))
				}
			}
			values[j].Time = at
		}
		if first < len(values) {
			// The writer hands the run back to recordSlabs once it has
			// copied it; the records before it hold nothing it needs.
			clear(values[:first])
			fresh = append(fresh, values[first:])
			if entry.headers != nil {
				slabs = append(slabs, entry.headers)
			}
			freshEnd += uint64(len(values) - first)
		} else {
			putRecords(values)
			putHeaders(entry.headers)
		}
		f.next += uint64(len(values))
	}
	if len(fresh) > 0 {
		f.w.enqueue(freshBase, fresh, slabs)
		f.stored = freshEnd
	}
	f.committed.Store(f.next)
	if len(logs) > 0 {
		f.index.Store(logs[len(logs)-1].Index)
	}
	return out
}

// applyMeta hands a catalogue command to the MetaFSM. A group without one
// (a partition's) applies nothing for it, as for a malformed entry.
func (f *fsm) applyMeta(index uint64, at time.Time, cmd []byte) metaResult {
	if f.c.cfg.Meta == nil {
		return metaResult{err: fmt.Errorf("raft entry %d: %w", index, ErrNoMeta)}
	}
	return metaResult{resp: f.c.cfg.Meta.Apply(index, at, cmd)}
}

// stamp returns the time of an entry's records: the time the leader
// proposed it at (for an entry of the first format, the time it appended
// it to its Raft log), but never before the previous entry's. Every node
// applies the same entries from the same floor, so every node gives a
// record the same time, and times never decrease along the log even when a
// new leader's clock is behind the old one's (a lookup by time relies on
// it). The floor travels in snapshots.
func (f *fsm) stamp(proposed, appended time.Time) time.Time {
	t := proposed
	if t.IsZero() {
		t = appended
	}
	var at int64
	if !t.IsZero() {
		at = t.UnixNano()
	}
	f.last = max(f.last, at)
	return time.Unix(0, f.last)
}

// fail stops this node's applying: the committed entries stay committed on
// the other nodes, and a restart replays them here.
func (f *fsm) fail(out []any, err error) []any {
	f.failed = fmt.Errorf("%w: %w", ErrApplyFailed, err)
	f.broken.Store(true)
	f.logger.Error("cluster: applying committed entries failed; this node serves no new records until restarted", "err", err)
	f.c.stepDown()
	f.c.standAside()
	for i := range out {
		out[i] = applyResult{err: f.failed}
	}
	return out
}

// Snapshot header, little endian:
//
//	0   8  magic "PLSNAP03"
//	8   8  next: the offset of the first record after the snapshot's raft index
//	16  8  lowest offset in the stream
//	24  8  the time of the last record applied (next-1), Unix nanoseconds:
//	       the floor for the next record's time (fsm.stamp)
//	32  4  M: length of the catalogue state
//	36  4  CRC32C of bytes 0..35 and the M bytes at 44
//	40  4  zero
//	44  M  the catalogue's state (MetaFSM.Snapshot); empty without a MetaFSM
//
// Then the stream of (*logstore.Log).Reader. Earlier versions are still
// read: "PLSNAP02" is bytes 0..31 as above, then the CRC32C of them and
// four zeros (40 bytes, no catalogue); "PLSNAP01" is 32 bytes: magic, next,
// lowest, CRC32C of bytes 0..23, four zeros, and its floor is the time of
// record next-1 where the store still holds it. A snapshot without a
// catalogue restores the catalogue's initial state.
const (
	snapHeaderSize   = 44 // without the catalogue state
	snapHeaderSizeV2 = 40
	snapHeaderSizeV1 = 32
	// maxMetaState bounds the catalogue state a header may claim, so a
	// damaged length cannot make a reader allocate gigabytes.
	maxMetaState = 256 << 20
)

var (
	snapMagic   = [8]byte{'P', 'L', 'S', 'N', 'A', 'P', '0', '3'}
	snapMagicV2 = [8]byte{'P', 'L', 'S', 'N', 'A', 'P', '0', '2'}
	snapMagicV1 = [8]byte{'P', 'L', 'S', 'N', 'A', 'P', '0', '1'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

type snapHeader struct {
	next, lowest uint64
	last         int64  // 0 from a first-version header: unknown
	meta         []byte // the catalogue's state; nil before the third version
}

// floor returns the time floor for the records after the snapshot: from
// the header, or for a first-version header the time of its last record,
// read from lg if it holds it.
func (h snapHeader) floor(lg *logstore.Log) int64 {
	if h.last != 0 || h.next == 0 {
		return h.last
	}
	return lastTime(lg, h.next)
}

// lastTime is the time of the record before next in lg, or 0.
func lastTime(lg *logstore.Log, next uint64) int64 {
	if next == 0 {
		return 0
	}
	rec, err := lg.Read(context.Background(), next-1)
	if err != nil {
		return 0
	}
	return rec.Time.UnixNano()
}

// snapHeaderLen is the length of the header at the start of head, which
// holds at least its first 36 bytes (or the whole of a shorter, older
// header); 0 if head does not start with a header.
func snapHeaderLen(head []byte) int {
	if len(head) < 8 {
		return 0
	}
	switch [8]byte(head[:8]) {
	case snapMagicV1:
		return snapHeaderSizeV1
	case snapMagicV2:
		return snapHeaderSizeV2
	case snapMagic:
		if len(head) < 36 {
			return 0
		}
		m := binary.LittleEndian.Uint32(head[32:])
		if m > maxMetaState {
			return 0
		}
		return snapHeaderSize + int(m)
	}
	return 0
}

func (h snapHeader) encode() []byte {
	b := make([]byte, snapHeaderSize+len(h.meta))
	copy(b, snapMagic[:])
	binary.LittleEndian.PutUint64(b[8:], h.next)
	binary.LittleEndian.PutUint64(b[16:], h.lowest)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.last))
	binary.LittleEndian.PutUint32(b[32:], uint32(len(h.meta)))
	copy(b[snapHeaderSize:], h.meta)
	crc := crc32.Update(crc32.Checksum(b[:36], castagnoli), castagnoli, h.meta)
	binary.LittleEndian.PutUint32(b[36:], crc)
	return b
}

func readSnapHeader(r io.Reader) (snapHeader, error) {
	bad := func(format string, args ...any) (snapHeader, error) {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: "+format, append([]any{logstore.ErrCorrupt}, args...)...)
	}
	b := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(r, b[:8]); err != nil {
		return bad("%v", err)
	}
	var magic [8]byte
	copy(magic[:], b)
	size, crcAt := snapHeaderSize, 36
	switch magic {
	case snapMagic:
	case snapMagicV2:
		size, crcAt = snapHeaderSizeV2, 32
	case snapMagicV1:
		size, crcAt = snapHeaderSizeV1, 24
	default:
		return bad("bad magic %q", b[:8])
	}
	b = b[:size]
	if _, err := io.ReadFull(r, b[8:]); err != nil {
		return bad("%v", err)
	}
	h := snapHeader{next: binary.LittleEndian.Uint64(b[8:]), lowest: binary.LittleEndian.Uint64(b[16:])}
	crc := crc32.Checksum(b[:crcAt], castagnoli)
	if magic == snapMagic {
		m := binary.LittleEndian.Uint32(b[32:])
		if m > maxMetaState {
			return bad("catalogue state of %d bytes", m)
		}
		h.meta = make([]byte, m)
		if _, err := io.ReadFull(r, h.meta); err != nil {
			return bad("catalogue state: %v", err)
		}
		crc = crc32.Update(crc, castagnoli, h.meta)
	}
	if crc != binary.LittleEndian.Uint32(b[crcAt:]) {
		return bad("crc mismatch")
	}
	if binary.LittleEndian.Uint32(b[crcAt+4:]) != 0 {
		return bad("reserved bytes not zero")
	}
	if magic != snapMagicV1 {
		h.last = int64(binary.LittleEndian.Uint64(b[24:]))
	}
	return h, nil
}

// Snapshot seals the store's active segment and links the sealed segment
// files into a staging directory (logstore.Link): the snapshot is every
// record applied so far, and taking it copies none of them. Persist moves
// the links into the snapshot raft creates, while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.failed != nil {
		return nil, f.failed
	}
	if err := f.w.flush(); err != nil {
		return nil, fmt.Errorf("cluster: write the store before a snapshot: %w", err)
	}
	var meta []byte
	if m := f.c.cfg.Meta; m != nil {
		var err error
		if meta, err = m.Snapshot(); err != nil {
			return nil, fmt.Errorf("cluster: snapshot the catalogue: %w", err)
		}
		if len(meta) > maxMetaState {
			return nil, fmt.Errorf("cluster: snapshot: the catalogue's state has %d bytes, at most %d fit", len(meta), maxMetaState)
		}
	}
	staging, err := f.c.snaps.staging()
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot: %w", err)
	}
	// Link makes the linked segments durable: Raft compacts its log once
	// this snapshot is persisted, and the store is synced only now and then.
	lowest, next, files, err := f.c.current().log.Link(staging)
	if err == nil && next != f.stored {
		err = fmt.Errorf("%w: the store ends at offset %d, the applied records at %d", logstore.ErrCorrupt, next, f.stored)
	}
	if err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("cluster: snapshot: %w", err)
	}
	f.c.snapshotTaken()
	return &fsmSnapshot{header: snapHeader{next: next, lowest: lowest, last: f.last, meta: meta}, staging: staging, files: files}, nil
}

type fsmSnapshot struct {
	header  snapHeader
	staging string // holds files until Persist moves them into the snapshot
	files   []logstore.LinkedFile
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.persist(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.header.encode()); err != nil {
		return err
	}
	if ls, ok := sink.(*snapshotSink); ok {
		return ls.link(s.staging, s.files)
	}
	// Another snapshot store gets the bytes.
	for _, lf := range s.files {
		f, err := os.Open(filepath.Join(s.staging, lf.Name))
		if err != nil {
			return err
		}
		_, err = io.Copy(sink, io.NewSectionReader(f, 0, lf.Size))
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *fsmSnapshot) Release() { os.RemoveAll(s.staging) }

// Restore makes the local store hold exactly the snapshot's records. If it
// holds them already (a restart: raft restores its latest snapshot, whose
// files are the store's own), nothing is read or rewritten; records past
// the snapshot are cut off, and Raft re-applies them from the entries after
// it, so the store never holds a record its Raft log does not vouch for.
// Otherwise the store is replaced by the snapshot's files.
func (f *fsm) Restore(rc io.ReadCloser) (err error) {
	defer rc.Close()
	h, err := readSnapHeader(rc)
	if err != nil {
		return err
	}
	if m := f.c.cfg.Meta; m != nil {
		// Once the records are restored, so that a failed restore leaves
		// both as they were; Raft then applies the entries after the
		// snapshot to both.
		defer func() {
			if err == nil {
				if err = m.Restore(h.meta); err != nil {
					err = fmt.Errorf("cluster: restore the catalogue: %w", err)
				}
			}
		}()
	}
	// What is queued is written first; a failed writer is replaced below.
	werr := f.w.flush()
	if f.failed == nil && werr == nil {
		lg := f.c.current().log
		lowest, have := lg.Bounds()
		if have >= h.next {
			keep := max(h.next, lowest)
			err := lg.TruncateFrom(keep)
			if err == nil {
				if have > keep {
					f.logger.Info("cluster: cut the store back to its latest snapshot; raft re-applies the rest", "from", keep, "records", have-keep)
				}
				f.next, f.stored = h.next, keep
				f.last = h.floor(lg)
				f.committed.Store(h.next)
				return nil
			}
			f.logger.Warn("cluster: cannot cut the store back to the snapshot; restoring it from the snapshot", "err", err)
		}
	}
	if err := f.c.replaceStore(func(dir string) error { return logstore.Restore(dir, rc) }); err != nil {
		return err
	}
	lg := f.c.current().log
	lowest, have := lg.Bounds()
	if have < h.next {
		return fmt.Errorf("%w: restored store ends at offset %d, the snapshot at %d", logstore.ErrCorrupt, have, h.next)
	}
	if keep := max(h.next, lowest); have > keep {
		// An older version's stream snapshot may carry records past next;
		// Raft re-applies them.
		if err := lg.TruncateFrom(keep); err != nil {
			return fmt.Errorf("cluster: restore: %w", err)
		}
		have = keep
	}
	if werr != nil {
		// The failed writer wrote nothing since (and its queue is empty:
		// flushed); it writes to the restored store from here on.
		f.w.err.Store(nil)
	}
	f.next, f.stored, f.failed = h.next, have, nil
	f.last = h.floor(lg)
	f.committed.Store(h.next)
	f.broken.Store(false)
	return nil
}
