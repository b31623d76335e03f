package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tvalLen puts 8 records in a 1 KiB segment in either format.
const tvalLen = 108

func tval(i uint64) []byte {
	v := fmt.Appendf(nil, "rec-%d-", i)
	for len(v) < tvalLen {
		v = append(v, byte('a'+i%26))
	}
	return v
}

// CopyLogDir copies a log directory's files, as a crash would leave them on
// disk (the page cache survives a process crash). Exported for the external
// tests, which start each damage case from the same bytes.
func CopyLogDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// checkTemplate checks Bounds and that every record left is the template's.
func checkTemplate(t *testing.T, l *Log, lowest, next uint64) {
	t.Helper()
	lo, n := l.Bounds()
	if lo != lowest || n != next {
		t.Fatalf("Bounds = %d, %d; want %d, %d", lo, n, lowest, next)
	}
	for off := lo; off < n; off++ {
		rec, err := l.Read(context.Background(), off)
		if err != nil || !bytes.Equal(rec.Value, tval(off)) {
			t.Fatalf("Read(%d) = %.20q, %v", off, rec.Value, err)
		}
	}
}

var errCrash = errors.New("simulated crash")

// TestTruncateCrashPoints stops TruncateFrom and Reset before each of their
// file operations in turn, as a crash there would, and opens a copy of the
// files as they are at that moment: TruncateFrom must leave a prefix of the
// old log holding at least [lowest, from), Reset the old log or the new
// empty one, and either must take appends at the right offset afterwards.
func TestTruncateCrashPoints(t *testing.T) { forFormatsInternal(t, testTruncateCrashPoints) }

// forFormatsInternal runs test with the log written in, then opened with,
// format v2 and v1, and written in v1 then opened with v2 (an upgrade).
func forFormatsInternal(t *testing.T, test func(t *testing.T, write, open Config)) {
	for _, f := range []struct {
		name        string
		write, open uint16
	}{{"v2", 0, 0}, {"v1", 1, 1}, {"upgraded", 1, 0}} {
		t.Run(f.name, func(t *testing.T) {
			test(t, Config{MaxSegmentBytes: 1024, format: f.write}, Config{MaxSegmentBytes: 1024, format: f.open})
		})
	}
}

func testTruncateCrashPoints(t *testing.T, write, cfg Config) {
	// 8 records per 1 KiB segment: bases 0, 8, 16, 24, 32; TruncateBefore(8)
	// drops the first, so the log is [8, 40) in four segments.
	const total = 40
	src := t.TempDir()
	l, err := Open(src, write)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(total) {
		if _, err := l.Append(t.Context(), tval(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.TruncateBefore(8); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	const lowest = 8
	for _, tc := range []struct {
		name  string
		reset bool
		at    uint64 // TruncateFrom's from, or Reset's next
	}{
		{"truncate inside the oldest sealed segment", false, 11},
		{"truncate at a sealed segment's base", false, 24},
		{"truncate at lowest", false, lowest},
		{"truncate inside the active segment", false, 35},
		{"reset lower", true, 3},
		{"reset higher", true, 500},
		{"reset to next", true, total},
		{"reset inside the range", true, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var done bool
			for crashAt := 0; !done; crashAt++ {
				if crashAt > 50 {
					t.Fatal("operation never completed")
				}
				dir := CopyLogDir(t, src)
				l, err := Open(dir, cfg)
				if err != nil {
					t.Fatal(err)
				}
				var steps []string
				l.step = func(what string) error {
					if len(steps) == crashAt {
						return fmt.Errorf("%w before %s", errCrash, what)
					}
					steps = append(steps, what)
					return nil
				}
				if tc.reset {
					err = l.Reset(tc.at)
				} else {
					err = l.TruncateFrom(tc.at)
				}
				var crashed string
				switch {
				case err == nil:
					done = true
				case errors.Is(err, errCrash) && errors.Is(err, ErrFailed):
					if _, aerr := l.Append(t.Context(), []byte("x")); !errors.Is(aerr, ErrFailed) {
						t.Fatalf("append after a failed truncation = %v, want ErrFailed", aerr)
					}
					crashed = CopyLogDir(t, dir)
				default:
					t.Fatalf("crash point %d: %v", crashAt, err)
				}
				l.Close()
				if done {
					crashed = dir
				}
				t.Logf("crash point %d after %q (completed %v)", crashAt, steps, done)

				var logs bytes.Buffer
				c := cfg
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				r, err := Open(crashed, c)
				if err != nil {
					t.Fatalf("crash point %d after %q: reopen: %v", crashAt, steps, err)
				}
				lo, next := r.Bounds()
				switch {
				case tc.reset && lo == tc.at && next == tc.at:
				case tc.reset:
					if done {
						t.Fatalf("completed Reset(%d) reopens as [%d, %d)", tc.at, lo, next)
					}
					checkTemplate(t, r, lowest, total)
				default:
					if next < tc.at || next > total || (done && next != tc.at) {
						t.Fatalf("crash point %d: TruncateFrom(%d) reopens as [%d, %d)", crashAt, tc.at, lo, next)
					}
					checkTemplate(t, r, lowest, next)
				}
				if _, err := os.Stat(filepath.Join(crashed, resetMarker)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("reset marker still there after Open: %v", err)
				}
				if off, err := r.Append(t.Context(), []byte("after")); err != nil || off != next {
					t.Fatalf("append after reopen = %d, %v; want %d", off, err, next)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestTruncateCrashStates sets up by hand states a crash around a
// truncation or reset could leave, including ones the operations' own order
// never produces, and checks what Open makes of them.
func TestTruncateCrashStates(t *testing.T) { forFormatsInternal(t, testTruncateCrashStates) }

func testTruncateCrashStates(t *testing.T, wcfg, cfg Config) {
	const total = 24 // bases 0, 8, 16
	src := t.TempDir()
	l, err := Open(src, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(total) {
		if _, err := l.Append(t.Context(), tval(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := func(dir string, base uint64, ext string) string {
		return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
	}
	write := func(t *testing.T, p string, b []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	marker := func(base uint64) []byte { return resetHeader(base) }
	for _, tc := range []struct {
		name         string
		damage       func(t *testing.T, dir string)
		lowest, next uint64
		logged       string
	}{
		{
			// Not an order TruncateFrom uses, but harmless: the newest
			// segment's index is never trusted, the store decides, and its
			// records are all still there.
			name: "active index cut, store not",
			damage: func(t *testing.T, dir string) {
				if err := os.Truncate(path(dir, 16, ".index"), fileHeaderSize+2*cfgLayout(wcfg).entrySize); err != nil {
					t.Fatal(err)
				}
			},
			next: total,
		},
		{
			name: "active store cut at a frame boundary, index not",
			damage: func(t *testing.T, dir string) {
				if err := os.Truncate(path(dir, 16, ".store"), fileHeaderSize+3*cfgLayout(wcfg).frameSize(tvalLen)); err != nil {
					t.Fatal(err)
				}
			},
			next: 19,
		},
		{
			name: "sealed segment made newest, its store cut, old sealed index",
			damage: func(t *testing.T, dir string) {
				os.Remove(path(dir, 16, ".store"))
				os.Remove(path(dir, 16, ".index"))
				if err := os.Truncate(path(dir, 8, ".store"), fileHeaderSize+5*cfgLayout(wcfg).frameSize(tvalLen)); err != nil {
					t.Fatal(err)
				}
			},
			next: 13,
		},
		{
			name: "sealed segment made newest, its index removed",
			damage: func(t *testing.T, dir string) {
				os.Remove(path(dir, 16, ".store"))
				os.Remove(path(dir, 16, ".index"))
				os.Remove(path(dir, 8, ".index"))
			},
			next: 16,
		},
		{
			name:   "torn reset marker, short",
			damage: func(t *testing.T, dir string) { write(t, filepath.Join(dir, resetMarker), marker(99)[:10]) },
			next:   total, logged: "removing a reset marker torn",
		},
		{
			name:   "torn reset marker, zeros",
			damage: func(t *testing.T, dir string) { write(t, filepath.Join(dir, resetMarker), make([]byte, 32)) },
			next:   total, logged: "removing a reset marker torn",
		},
		{
			name: "torn reset marker, bad crc",
			damage: func(t *testing.T, dir string) {
				b := marker(99)
				b[20] ^= 1
				write(t, filepath.Join(dir, resetMarker), b)
			},
			next: total, logged: "removing a reset marker torn",
		},
		{
			name:   "reset marker durable, nothing deleted yet",
			damage: func(t *testing.T, dir string) { write(t, filepath.Join(dir, resetMarker), marker(99)) },
			lowest: 99, next: 99, logged: "finishing a reset",
		},
		{
			name: "reset marker, some segments deleted, new store torn",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, resetMarker), marker(5))
				os.Remove(path(dir, 0, ".store"))
				os.Remove(path(dir, 0, ".index"))
				os.Remove(path(dir, 8, ".store"))
				write(t, path(dir, 5, ".store"), []byte("PLOG"))
			},
			lowest: 5, next: 5, logged: "finishing a reset",
		},
		{
			name: "reset marker naming an old segment's base",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, resetMarker), marker(16))
			},
			lowest: 16, next: 16, logged: "finishing a reset",
		},
		{
			name: "reset done but for the marker",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, resetMarker), marker(7))
				for _, b := range []uint64{0, 8, 16} {
					os.Remove(path(dir, b, ".store"))
					os.Remove(path(dir, b, ".index"))
				}
				write(t, path(dir, 7, ".store"), fileHeader(storeMagic, 7, 2))
			},
			lowest: 7, next: 7, logged: "finishing a reset",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := CopyLogDir(t, src)
			tc.damage(t, dir)
			var logs bytes.Buffer
			c := cfg
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			l, err := Open(dir, c)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if !strings.Contains(logs.String(), tc.logged) {
				t.Fatalf("log output %q lacks %q", logs.String(), tc.logged)
			}
			checkTemplate(t, l, tc.lowest, tc.next)
			if _, err := os.Stat(filepath.Join(dir, resetMarker)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("reset marker still there: %v", err)
			}
			if off, err := l.Append(t.Context(), []byte("more")); err != nil || off != tc.next {
				t.Fatalf("append = %d, %v; want %d", off, err, tc.next)
			}
		})
	}
}

// TestTruncateWithQueuedAppends: appends queued before a truncation are
// written and acknowledged at their offsets first (and then deleted with the
// rest); an append that queues while the truncation runs gets the first
// offset after it.
func TestTruncateWithQueuedAppends(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncNever} {
		for _, tc := range []struct {
			op   string
			want uint64 // where the log continues
		}{
			{"truncate below the queued appends", 7},
			{"truncate inside the queued appends", 12},
			{"reset", 100},
		} {
			reset, want := tc.op == "reset", tc.want
			t.Run(policy.String()+"/"+tc.op, func(t *testing.T) {
				l, err := Open(t.TempDir(), Config{Sync: policy, MaxSegmentBytes: 1024})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				for i := range uint64(10) {
					if _, err := l.Append(t.Context(), tval(i)); err != nil {
						t.Fatal(err)
					}
				}
				type result struct {
					off uint64
					err error
				}
				appendAsync := func(v []byte) chan result {
					ch := make(chan result, 1)
					go func() {
						off, err := l.Append(context.Background(), v)
						ch <- result{off, err}
					}()
					return ch
				}
				waitQueued := func(n uint64) {
					for {
						l.mu.Lock()
						q := l.pending.n
						l.mu.Unlock()
						if q == n {
							return
						}
						runtime.Gosched()
					}
				}
				l.flushMu.Lock()
				var queued []chan result
				for i := range uint64(5) {
					queued = append(queued, appendAsync(tval(10+i)))
					waitQueued(i + 1)
				}
				var during chan result
				l.step = func(string) error {
					if during == nil {
						during = appendAsync([]byte("during"))
						waitQueued(1)
					}
					return nil
				}
				if reset {
					err = l.resetTo(want)
				} else {
					err = l.truncateFrom(want)
				}
				l.step = nil
				l.flushMu.Unlock()
				if err != nil {
					t.Fatal(err)
				}
				for i, ch := range queued {
					if r := <-ch; r.err != nil || r.off != 10+uint64(i) {
						t.Fatalf("queued append %d = %d, %v; want %d, nil", i, r.off, r.err, 10+i)
					}
				}
				if r := <-during; r.err != nil || r.off != want {
					t.Fatalf("append during the truncation = %d, %v; want %d", r.off, r.err, want)
				}
				if _, next := l.Bounds(); next != want+1 {
					t.Fatalf("next %d, want %d", next, want+1)
				}
				if rec, err := l.Read(context.Background(), want); err != nil || string(rec.Value) != "during" {
					t.Fatalf("Read(%d) = %q, %v", want, rec.Value, err)
				}
				if !reset {
					for off := range want {
						if rec, err := l.Read(context.Background(), off); err != nil || !bytes.Equal(rec.Value, tval(off)) {
							t.Fatalf("Read(%d) = %.20q, %v", off, rec.Value, err)
						}
					}
				}
			})
		}
	}
}

// TestTruncateFromDamagedBoundary: a damaged record just before the cut
// makes TruncateFrom refuse with ErrCorrupt and change nothing.
func TestTruncateFromDamagedBoundary(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Config{MaxSegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range uint64(20) {
		if _, err := l.Append(t.Context(), tval(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Record 4 sits in the first (sealed) segment at 32 + 4 frames.
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%020d.store", 0)), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), fileHeaderSize+4*layoutNew.frameSize(tvalLen)+40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := l.TruncateFrom(5); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrFailed) {
		t.Fatalf("TruncateFrom past a damaged record = %v, want ErrCorrupt", err)
	}
	if st := l.Stats(); st.Next != 20 || st.Segments != 3 {
		t.Fatalf("a refused truncation changed the log: %+v", st)
	}
	if off, err := l.Append(t.Context(), tval(20)); err != nil || off != 20 {
		t.Fatalf("append after a refused truncation = %d, %v", off, err)
	}
	if err := l.TruncateFrom(4); err != nil {
		t.Fatalf("TruncateFrom at the damaged record: %v", err)
	}
	if _, next := l.Bounds(); next != 4 {
		t.Fatalf("next %d, want 4", next)
	}
}
