package raftwal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

var ctx = context.Background()

// testWAL is a WAL and the logs of some directories under its root, all
// open, closed when the test ends.
type testWAL struct {
	t    testing.TB
	cfg  Config
	w    *WAL
	dirs []string
	logs []*Log
}

// newTestWAL opens a WAL in a temporary directory with the logs of n
// directories under its root. A long CompactEvery leaves compaction to the
// test and to the kicks of truncations.
func newTestWAL(t testing.TB, n int, segmentBytes int64) *testWAL {
	t.Helper()
	tmp := t.TempDir()
	cfg := Config{
		Dir:          filepath.Join(tmp, "wal"),
		Root:         filepath.Join(tmp, "root"),
		SegmentBytes: segmentBytes,
		CompactEvery: time.Hour,
	}
	return newTestWALConfig(t, cfg, n)
}

// newTestWALConfig opens a WAL of cfg with the logs of n directories under
// cfg.Root.
func newTestWALConfig(t testing.TB, cfg Config, n int) *testWAL {
	t.Helper()
	h := &testWAL{t: t, cfg: cfg}
	for i := range n {
		h.dirs = append(h.dirs, filepath.Join(cfg.Root, fmt.Sprintf("group-%d", i)))
	}
	t.Cleanup(h.closeQuietly)
	h.open()
	return h
}

// open opens the WAL and the log of every directory.
func (h *testWAL) open() {
	h.t.Helper()
	w, err := OpenWAL(h.cfg)
	if err != nil {
		h.t.Fatalf("OpenWAL: %v", err)
	}
	h.w = w
	h.logs = make([]*Log, len(h.dirs))
	for i, dir := range h.dirs {
		if h.logs[i], err = w.Open(dir); err != nil {
			h.t.Fatalf("Open(%s): %v", dir, err)
		}
	}
}

// close closes every log, then the WAL.
func (h *testWAL) close() {
	h.t.Helper()
	for i, l := range h.logs {
		if err := l.Close(); err != nil {
			h.t.Fatalf("Close log %d: %v", i, err)
		}
	}
	if err := h.w.Close(); err != nil {
		h.t.Fatalf("Close WAL: %v", err)
	}
}

// closeQuietly closes what is still open, so that a failed test does not
// also leak goroutines.
func (h *testWAL) closeQuietly() {
	for _, l := range h.logs {
		if l != nil {
			l.Close()
		}
	}
	if h.w != nil {
		h.w.Close()
	}
}

// reopen closes the WAL and opens it again: every log is replayed.
func (h *testWAL) reopen() {
	h.t.Helper()
	h.close()
	h.open()
}

// model is what a log must hold, with the rules of state.go.
type model struct {
	lowest, next uint64
	values       map[uint64][]byte
}

func newModel() *model { return &model{values: map[uint64][]byte{}} }

// append stores values from next on and returns the first one's index.
func (m *model) append(values [][]byte) uint64 {
	first := m.next
	for _, v := range values {
		m.values[m.next] = bytes.Clone(v)
		m.next++
	}
	return first
}

func (m *model) truncateFrom(i uint64) {
	switch {
	case i >= m.next:
	case i <= m.lowest:
		m.reset(i)
	default:
		for ; m.next > i; m.next-- {
			delete(m.values, m.next-1)
		}
	}
}

func (m *model) truncateBefore(i uint64) {
	switch {
	case i <= m.lowest:
	case i >= m.next:
		m.reset(m.next)
	default:
		for ; m.lowest < i; m.lowest++ {
			delete(m.values, m.lowest)
		}
	}
}

func (m *model) reset(n uint64) {
	clear(m.values)
	m.lowest, m.next = n, n
}

// bytes is the size of the model's values.
func (m *model) bytes() int64 {
	var n int64
	for _, v := range m.values {
		n += int64(len(v))
	}
	return n
}

// checkLog fails unless l holds exactly what m holds: its bounds, every
// entry's bytes, and ErrOutOfRange just outside them.
func checkLog(t testing.TB, what string, l *Log, m *model) {
	t.Helper()
	lowest, next := l.Bounds()
	if lowest != m.lowest || next != m.next {
		t.Fatalf("%s: Bounds() = %d, %d; want %d, %d", what, lowest, next, m.lowest, m.next)
	}
	for i := m.lowest; i < m.next; i++ {
		rec, err := l.Read(ctx, i)
		if err != nil {
			t.Fatalf("%s: Read(%d): %v", what, i, err)
		}
		if rec.Offset != i || !bytes.Equal(rec.Value, m.values[i]) {
			t.Fatalf("%s: Read(%d) = offset %d, %d bytes %.20x; want %d bytes %.20x", what, i, rec.Offset, len(rec.Value), rec.Value, len(m.values[i]), m.values[i])
		}
	}
	outside := []uint64{m.next, m.next + 1}
	if m.lowest > 0 {
		outside = append(outside, m.lowest-1)
	}
	for _, i := range outside {
		if _, err := l.Read(ctx, i); !errors.Is(err, logstore.ErrOutOfRange) {
			t.Fatalf("%s: Read(%d) outside %d..%d: %v, want ErrOutOfRange", what, i, m.lowest, m.next, err)
		}
	}
}

// mustAppend appends values to l and to m and checks the first index.
func mustAppend(t testing.TB, l *Log, m *model, values ...[]byte) {
	t.Helper()
	first, err := l.AppendBatch(ctx, values)
	if err != nil {
		t.Fatalf("AppendBatch(%d values): %v", len(values), err)
	}
	if want := m.append(values); first != want {
		t.Fatalf("AppendBatch returned %d, want %d", first, want)
	}
}

// logCount is how many logs the WAL keeps a state for.
func logCount(w *WAL) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.logs)
}

// checkAllLogs checks every log against its model.
func checkAllLogs(t testing.TB, what string, logs []*Log, models []*model) {
	t.Helper()
	for i, l := range logs {
		checkLog(t, fmt.Sprintf("%s: log %d", what, i), l, models[i])
	}
}

// adoptEmptyNumbering takes, after a reopen, the numbering of the logs
// that were empty: it is not kept (see "The numbering of an empty log" in
// doc.go). They must still be empty; a non-empty log must reopen exactly
// as it was, which checkLog sees.
func adoptEmptyNumbering(t testing.TB, logs []*Log, models []*model) {
	t.Helper()
	for i, m := range models {
		if m.lowest != m.next {
			continue
		}
		lowest, next := logs[i].Bounds()
		if lowest != next {
			t.Fatalf("log %d was empty at %d before the reopen and holds %d..%d after it", i, m.next, lowest, next)
		}
		m.reset(next)
	}
}

// compactUntil runs Compact in a loop, pausing between calls, until done
// is closed; it reports a failure with t.Errorf (it runs in a goroutine).
func compactUntil(t *testing.T, w *WAL, done <-chan struct{}, pause time.Duration) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if err := w.Compact(); err != nil {
			t.Errorf("Compact: %v", err)
			return
		}
		time.Sleep(pause)
	}
}
