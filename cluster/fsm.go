package cluster

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	var fresh [][]byte
	var freshBase uint64
	for i, e := range logs {
		f.c.applied(len(e.Data))
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
				if off >= lowest {
					return f.fail(out, fmt.Errorf("%w: raft entry %d carries offset %d but the local log already holds it", logstore.ErrCorrupt, e.Index, off))
				}
				continue // retention deleted it already
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

// fail stops this node's applying: the committed entries stay committed on
// the other nodes, and a restart replays them here.
func (f *fsm) fail(out []any, err error) []any {
	f.failed = fmt.Errorf("%w: %w", ErrApplyFailed, err)
	f.broken.Store(true)
	f.logger.Error("cluster: applying committed entries failed; this node serves no new records until restarted", "err", err)
	f.c.stepDown()
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
	return &fsmSnapshot{header: snapHeader{next: next, lowest: lowest}, staging: staging, files: files}, nil
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
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	h, err := readSnapHeader(rc)
	if err != nil {
		return err
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
	f.committed.Store(h.next)
	f.broken.Store(false)
	return nil
}
