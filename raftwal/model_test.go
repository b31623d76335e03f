package raftwal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestModel runs random operations on a few logs of one WAL, with small
// segments so that they roll and compaction deletes and relocates, and
// after each operation compares every log with a simple model of it.
func TestModel(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		ops  int
	}{{1, 2000}, {2, 2000}, {3, 2000}, {4, 2000}} {
		t.Run(fmt.Sprintf("seed=%d", tc.seed), func(t *testing.T) {
			t.Parallel() // mostly waiting for fsyncs
			runModel(t, tc.seed, tc.ops)
		})
	}
}

const modelSegmentBytes = 4096

// modelRun is one run of TestModel: the WAL, the models of its logs and
// the random source choosing the operations.
type modelRun struct {
	t      *testing.T
	r      *rand.Rand
	h      *testWAL
	models []*model
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, seed))
	n := 3 + r.IntN(3)
	// Logs 0..n-1 take the random operations; log n, idle, holds three
	// small entries from the start, which only relocation moves on.
	run := &modelRun{t: t, r: r, h: newTestWAL(t, n+1, modelSegmentBytes)}
	for range n + 1 {
		run.models = append(run.models, newModel())
	}
	mustAppend(t, run.h.logs[n], run.models[n], []byte("idle 1"), []byte("idle 2"), []byte("idle 3"))
	for step := range ops {
		what := run.step(r.IntN(n))
		run.checkAll(fmt.Sprintf("step %d (%s)", step, what))
	}
	run.checkDiskBound()
}

// step does one random operation on log i (or on the whole WAL) and says
// which.
func (run *modelRun) step(i int) string {
	t, r, h := run.t, run.r, run.h
	l, m := h.logs[i], run.models[i]
	switch p := r.IntN(100); {
	case p < 40:
		values := randomValues(r)
		mustAppend(t, l, m, values...)
		return fmt.Sprintf("log %d: AppendBatch of %d values", i, len(values))
	case p < 48:
		index := near(r, m)
		if err := l.TruncateFrom(index); err != nil {
			t.Fatalf("log %d: TruncateFrom(%d): %v", i, index, err)
		}
		m.truncateFrom(index)
		return fmt.Sprintf("log %d: TruncateFrom(%d)", i, index)
	case p < 63:
		index := near(r, m)
		if err := l.TruncateBefore(index); err != nil {
			t.Fatalf("log %d: TruncateBefore(%d): %v", i, index, err)
		}
		m.truncateBefore(index)
		return fmt.Sprintf("log %d: TruncateBefore(%d)", i, index)
	case p < 66:
		next := r.Uint64N(m.next + 10)
		if err := l.Reset(next); err != nil {
			t.Fatalf("log %d: Reset(%d): %v", i, next, err)
		}
		m.reset(next)
		return fmt.Sprintf("log %d: Reset(%d)", i, next)
	case p < 76:
		return run.checkReadBatch(i)
	case p < 90:
		run.compact()
		return "Compact"
	case p < 96:
		h.reopen()
		adoptEmptyNumbering(t, h.logs, run.models)
		return "reopen the WAL"
	default:
		run.recreate(i)
		return fmt.Sprintf("remove and recreate the directory of log %d", i)
	}
}

// randomValues is 1 to 5 values of 0 to 300 random bytes.
func randomValues(r *rand.Rand) [][]byte {
	values := make([][]byte, 1+r.IntN(5))
	for k := range values {
		values[k] = make([]byte, r.IntN(301))
		for j := range values[k] {
			values[k][j] = byte(r.Uint32())
		}
	}
	return values
}

// near is an index at or around the log's entries: truncations inside,
// at the edges and just outside them.
func near(r *rand.Rand, m *model) uint64 {
	lo := max(m.lowest, 2) - 2
	return lo + r.Uint64N(m.next+3-lo)
}

// checkReadBatch reads a random batch of log i and compares it with the
// model's entries.
func (run *modelRun) checkReadBatch(i int) string {
	t, r := run.t, run.r
	l, m := run.h.logs[i], run.models[i]
	index := near(r, m)
	maxRecords, maxBytes := 1+r.IntN(6), r.IntN(800)
	what := fmt.Sprintf("log %d: ReadBatch(%d, %d, %d)", i, index, maxRecords, maxBytes)
	sentinel := logstore.Record{Offset: 12345}
	got, err := l.ReadBatch(ctx, index, maxRecords, maxBytes, []logstore.Record{sentinel})
	if index < m.lowest {
		if !errors.Is(err, logstore.ErrOutOfRange) {
			t.Fatalf("%s below %d: %v, want ErrOutOfRange", what, m.lowest, err)
		}
		return what
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(got) == 0 || got[0].Offset != sentinel.Offset {
		t.Fatalf("%s did not append to dst: %v", what, got)
	}
	want := []logstore.Record{sentinel}
	size := 0
	for k := 0; k < maxRecords && index < m.next; k, index = k+1, index+1 {
		v := m.values[index]
		if k > 0 && size+len(v) > maxBytes {
			break
		}
		size += len(v)
		want = append(want, logstore.Record{Offset: index, Value: v})
	}
	if !slices.EqualFunc(got, want, func(a, b logstore.Record) bool {
		return a.Offset == b.Offset && bytes.Equal(a.Value, b.Value)
	}) {
		t.Fatalf("%s = %d records, want %d", what, len(got)-1, len(want)-1)
	}
	return what
}

// compact compacts the WAL; it must forget the removed directories' logs.
func (run *modelRun) compact() {
	run.t.Helper()
	if err := run.h.w.Compact(); err != nil {
		run.t.Fatalf("Compact: %v", err)
	}
	if n := logCount(run.h.w); n != len(run.h.dirs) {
		run.t.Fatalf("after Compact the WAL holds %d logs, want %d (one per directory)", n, len(run.h.dirs))
	}
}

// recreate removes the directory of log i and creates it again: a new
// incarnation, whose log is empty whatever the WAL holds for the old one.
func (run *modelRun) recreate(i int) {
	t, h := run.t, run.h
	t.Helper()
	if err := h.logs[i].Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.dirs[i]); err != nil {
		t.Fatal(err)
	}
	l, err := h.w.Open(h.dirs[i])
	if err != nil {
		t.Fatalf("Open(%s) after removing it: %v", h.dirs[i], err)
	}
	h.logs[i], run.models[i] = l, newModel()
}

func (run *modelRun) checkAll(what string) {
	run.t.Helper()
	checkAllLogs(run.t, what, run.h.logs, run.models)
}

// checkDiskBound ends the run as Raft would after snapshots (every busy
// log keeps one small entry), compacts, and checks that the WAL kept only
// a few segments (the idle log's entries were moved on), also after a
// reopen.
func (run *modelRun) checkDiskBound() {
	t, h := run.t, run.h
	for i, l := range h.logs[:len(h.logs)-1] {
		m := run.models[i]
		mustAppend(t, l, m, []byte("tail"))
		if err := l.TruncateBefore(m.next - 1); err != nil {
			t.Fatal(err)
		}
		m.truncateBefore(m.next - 1)
	}
	run.compact()
	checkSegments(t, h.w, run.models, modelSegmentBytes)
	h.reopen()
	adoptEmptyNumbering(t, h.logs, run.models)
	run.checkAll("after the last compaction and a reopen")
	checkSegments(t, h.w, run.models, modelSegmentBytes)
}

// checkSegments fails if the WAL has more segments than its logs' live
// data needs, plus a few.
func checkSegments(t testing.TB, w *WAL, models []*model, segmentBytes int64) {
	t.Helper()
	var live int64
	for _, m := range models {
		live += m.bytes()
	}
	st := w.Stats()
	if limit := int(live/segmentBytes) + 4; st.Segments > limit {
		t.Fatalf("the WAL has %d segments (%d bytes) for %d bytes of live entries; want at most %d", st.Segments, st.SizeBytes, live, limit)
	}
}

// TestCompactMovesIdleLog: an idle log whose few entries were written
// first must not keep every segment a busy log wrote after them.
func TestCompactMovesIdleLog(t *testing.T) {
	const segmentBytes = 4096
	for _, tc := range []struct {
		name       string
		closeIdle  bool // the idle log is closed while the busy one writes
		busyRounds int
	}{
		{"idle log open", false, 200},
		{"idle log closed", true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestWAL(t, 2, segmentBytes)
			mi, mb := newModel(), newModel()
			mustAppend(t, h.logs[0], mi, []byte("one"), []byte("two"), []byte("three"))
			if tc.closeIdle {
				if err := h.logs[0].Close(); err != nil {
					t.Fatal(err)
				}
			}
			// The busy log appends and compacts like Raft: it keeps its
			// last two entries, about 50 segments' worth in all.
			value := bytes.Repeat([]byte("x"), 1000)
			for range tc.busyRounds {
				mustAppend(t, h.logs[1], mb, value)
				keep := max(mb.next, 2) - 2
				if err := h.logs[1].TruncateBefore(keep); err != nil {
					t.Fatal(err)
				}
				mb.truncateBefore(keep)
			}
			if err := h.w.Compact(); err != nil {
				t.Fatal(err)
			}
			checkSegments(t, h.w, []*model{mi, mb}, segmentBytes)
			if tc.closeIdle {
				l, err := h.w.Open(h.dirs[0])
				if err != nil {
					t.Fatal(err)
				}
				h.logs[0] = l
			}
			checkLog(t, "idle log after Compact", h.logs[0], mi)
			checkLog(t, "busy log after Compact", h.logs[1], mb)
			h.reopen()
			checkLog(t, "idle log after a reopen", h.logs[0], mi)
			checkLog(t, "busy log after a reopen", h.logs[1], mb)
			checkSegments(t, h.w, []*model{mi, mb}, segmentBytes)
		})
	}
}
