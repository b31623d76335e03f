package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sync/atomic"

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
	// stored is the offset the next record handed to w gets: the store's
	// end once w has written everything queued.
	stored uint64
	failed error       // set when applying failed; the node then applies nothing more
	broken atomic.Bool // failed != nil, for metrics
	// committed is next as readers see it: records below it are committed
	// and applied, though perhaps not written to the store yet.
	committed atomic.Uint64
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
// and hands the new ones to the store writer as one run. Records whose
// offsets the local store already holds (a restart replaying entries after
// the last snapshot) are compared with the store instead of being written
// again.
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
	var fresh [][]byte
	var freshBase uint64
	for i, e := range logs {
		if e.Type != raft.LogCommand {
			continue
		}
		values, err := decodeBatch(e.Data)
		if err != nil {
			// Every node decodes the same committed bytes the same way, so a
			// malformed entry adds no records anywhere.
			out[i] = applyResult{err: fmt.Errorf("raft entry %d: %w", e.Index, err)}
			continue
		}
		base := f.next
		out[i] = applyResult{base: base, n: len(values)}
		for j, v := range values {
			off := base + uint64(j)
			if off < have {
				if err := verifyHeld(lg, off, lowest, v); err != nil {
					return f.fail(out, fmt.Errorf("raft entry %d: %w", e.Index, err))
				}
				continue
			}
			if len(fresh) == 0 {
				if off != have {
					return f.fail(out, fmt.Errorf("%w: raft entry %d carries offset %d but the local log ends at %d", logstore.ErrCorrupt, e.Index, off, have))
				}
				freshBase = off
			}
			fresh = append(fresh, v)
		}
		f.next += uint64(len(values))
	}
	if len(fresh) > 0 {
		f.w.enqueue(freshBase, fresh)
		f.stored = freshBase + uint64(len(fresh))
	}
	f.committed.Store(f.next)
	return out
}

// verifyHeld checks a record the local log already holds against the
// committed value. Records retention already deleted cannot be checked.
func verifyHeld(lg *logstore.Log, off, lowest uint64, want []byte) error {
	if off < lowest {
		return nil
	}
	rec, err := lg.Read(off)
	if errors.Is(err, logstore.ErrOutOfRange) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(rec.Value, want) {
		return fmt.Errorf("%w: the local record at offset %d differs from the committed one", logstore.ErrCorrupt, off)
	}
	return nil
}

// fail stops this node's applying: the committed entries stay committed on
// the other nodes, and a restart replays them here.
func (f *fsm) fail(out []any, err error) []any {
	f.failed = fmt.Errorf("%w: %w", ErrApplyFailed, err)
	f.broken.Store(true)
	f.logger.Error("cluster: applying committed entries failed; this node serves no new records until restarted", "err", err)
	for i := range out {
		out[i] = applyResult{err: f.failed}
	}
	return out
}

// Snapshot header, 32 bytes, little endian:
//
//	0   8  magic "PLSNAP01"
//	8   8  next: the offset of the first record after the snapshot's raft index
//	16  8  lowest offset in the stream
//	24  4  CRC32C of bytes 0..23
//	28  4  zero
//
// Then the stream of (*logstore.Log).Reader.
const snapHeaderSize = 32

var (
	snapMagic  = [8]byte{'P', 'L', 'S', 'N', 'A', 'P', '0', '1'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

type snapHeader struct{ next, lowest uint64 }

func (h snapHeader) encode() []byte {
	b := make([]byte, snapHeaderSize)
	copy(b, snapMagic[:])
	binary.LittleEndian.PutUint64(b[8:], h.next)
	binary.LittleEndian.PutUint64(b[16:], h.lowest)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

func readSnapHeader(r io.Reader) (snapHeader, error) {
	b := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: %v", logstore.ErrCorrupt, err)
	}
	if [8]byte(b[:8]) != snapMagic {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: bad magic %q", logstore.ErrCorrupt, b[:8])
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:28]) {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: crc mismatch", logstore.ErrCorrupt)
	}
	if binary.LittleEndian.Uint32(b[28:]) != 0 {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: reserved bytes not zero", logstore.ErrCorrupt)
	}
	return snapHeader{next: binary.LittleEndian.Uint64(b[8:]), lowest: binary.LittleEndian.Uint64(b[16:])}, nil
}

// Snapshot captures the store's segments as they are now; Persist streams
// them while Apply goes on (sealed segments never change, the active one is
// read only up to its end now).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.failed != nil {
		return nil, f.failed
	}
	if err := f.w.flush(); err != nil {
		return nil, fmt.Errorf("cluster: write the store before a snapshot: %w", err)
	}
	lg := f.c.current().log
	// Raft compacts its log once this snapshot is persisted, and the store
	// (SyncNever) may hold sealed segments that were never synced: make
	// every applied record durable in the store before that copy goes.
	if err := lg.Sync(); err != nil {
		return nil, fmt.Errorf("cluster: sync the store before a snapshot: %w", err)
	}
	lowest, _ := lg.Bounds()
	return &fsmSnapshot{header: snapHeader{next: f.next, lowest: lowest}, r: lg.Reader()}, nil
}

type fsmSnapshot struct {
	header snapHeader
	r      io.Reader
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.header.encode()); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if _, err := io.Copy(sink, s.r); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore makes the local store hold at least the snapshot's records. If it
// already does (a restart: the store survived and raft restores its latest
// snapshot), nothing is rewritten and the entries after the snapshot are
// replayed against the store. Otherwise the store is replaced by the
// snapshot's files.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	h, err := readSnapHeader(rc)
	if err != nil {
		return err
	}
	// What is queued is written first; a failed writer is replaced below.
	werr := f.w.flush()
	if f.failed == nil && werr == nil {
		if _, have := f.c.current().log.Bounds(); have >= h.next {
			f.next, f.stored = h.next, have
			f.committed.Store(h.next)
			return nil
		}
	}
	if err := f.c.replaceStore(func(dir string) error { return logstore.Restore(dir, rc) }); err != nil {
		return err
	}
	_, have := f.c.current().log.Bounds()
	if have < h.next {
		return fmt.Errorf("%w: restored store ends at offset %d, the snapshot at %d", logstore.ErrCorrupt, have, h.next)
	}
	if werr != nil {
		// The failed writer wrote nothing since (and its queue is empty:
		// flushed); it writes to the restored store from here on.
		f.w.err.Store(nil)
	}
	f.next, f.stored, f.failed = h.next, have, nil
	f.committed.Store(h.next)
	f.broken.Store(false)
	return nil
}
