package raftwal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// valueFor is the bytes of entry index of log i, whoever writes it: the
// readers can check any entry they read without asking its writer.
func valueFor(i int, index uint64) []byte {
	v := fmt.Appendf(nil, "log %d entry %d:", i, index)
	return append(v, bytes.Repeat([]byte{byte(index)}, int(index*7+uint64(i)*13)%200)...)
}

// TestConcurrent: 8 writers append to their own logs (and truncate them
// like Raft) while readers read random entries of every log and Compact
// runs in a loop, in the background too; then the WAL reopens with what
// each writer wrote.
func TestConcurrent(t *testing.T) {
	const logs, batches, readers = 8, 200, 2
	tmp := t.TempDir()
	h := newTestWALConfig(t, Config{
		Dir:          filepath.Join(tmp, "wal"),
		Root:         filepath.Join(tmp, "root"),
		SegmentBytes: 4096,
		CompactEvery: 2 * time.Millisecond, // the compaction loop runs too
	}, logs)
	models := make([]*model, logs)
	for i := range models {
		models[i] = newModel()
	}
	var writers, others sync.WaitGroup
	for i := range logs {
		writers.Go(func() {
			if err := writeLog(h.logs[i], models[i], i, batches); err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	done := make(chan struct{})
	for k := range readers {
		others.Go(func() {
			r := rand.New(rand.NewPCG(uint64(k), 7))
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				i := r.IntN(logs)
				if err := readRandom(r, h.logs[i], i); err != nil {
					t.Errorf("reader %d, read %d: %v", k, n, err)
					return
				}
			}
		})
	}
	// The pause lets the writers through on a small machine.
	others.Go(func() { compactUntil(t, h.w, done, time.Millisecond) })
	writers.Wait()
	close(done)
	others.Wait()
	if t.Failed() {
		return
	}
	checkAllLogs(t, "after the writers", h.logs, models)
	h.reopen()
	checkAllLogs(t, "after a reopen", h.logs, models)
}

// writeLog appends batches of 1 to 3 entries to log i and mirrors them in
// m; every 10 batches it drops all but the last 5 entries, and now and
// then it replaces its last entry.
func writeLog(l *Log, m *model, i, batches int) error {
	r := rand.New(rand.NewPCG(uint64(i), 3))
	for b := range batches {
		values := make([][]byte, 1+r.IntN(3))
		for k := range values {
			values[k] = valueFor(i, m.next+uint64(k))
		}
		first, err := l.AppendBatch(ctx, values)
		if err != nil {
			return fmt.Errorf("batch %d: %w", b, err)
		}
		if want := m.append(values); first != want {
			return fmt.Errorf("batch %d stored at %d, want %d", b, first, want)
		}
		switch {
		case b%10 == 9:
			keep := max(m.next, 5) - 5
			if err := l.TruncateBefore(keep); err != nil {
				return fmt.Errorf("TruncateBefore(%d): %w", keep, err)
			}
			m.truncateBefore(keep)
		case b%7 == 6:
			if err := l.TruncateFrom(m.next - 1); err != nil {
				return fmt.Errorf("TruncateFrom(%d): %w", m.next-1, err)
			}
			m.truncateFrom(m.next - 1)
		}
	}
	return nil
}

// readRandom reads a random entry of log i, or a batch from it, and checks
// the bytes. An entry its writer dropped meanwhile is out of range.
func readRandom(r *rand.Rand, l *Log, i int) error {
	lowest, next := l.Bounds()
	if lowest == next {
		return nil
	}
	index := lowest + r.Uint64N(next-lowest)
	recs, err := l.ReadBatch(ctx, index, 1+r.IntN(3), 1<<20, nil)
	if errors.Is(err, logstore.ErrOutOfRange) {
		if lowest, _ := l.Bounds(); lowest <= index {
			return fmt.Errorf("entry %d of log %d is out of range, but the log starts at %d: %w", index, i, lowest, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("ReadBatch(%d) of log %d: %w", index, i, err)
	}
	for k, rec := range recs {
		if rec.Offset != index+uint64(k) || !bytes.Equal(rec.Value, valueFor(i, rec.Offset)) {
			return fmt.Errorf("ReadBatch(%d) of log %d: record %d is entry %d, %q", index, i, k, rec.Offset, rec.Value)
		}
	}
	return nil
}
