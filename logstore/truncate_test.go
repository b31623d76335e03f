package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// checkDisk compares Stats with the store files on disk: segment count and
// the bytes the log accounts for.
func checkDisk(t *testing.T, l *logstore.Log, dir string) {
	t.Helper()
	var size int64
	stores := storeFiles(t, dir)
	for _, f := range stores {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if st := l.Stats(); st.Segments != len(stores) || st.SizeBytes != size {
		t.Fatalf("Stats %+v, but %d store files with %d bytes on disk", st, len(stores), size)
	}
}

// checkRange checks Bounds and that every offset in it reads as want says.
func checkRange(t *testing.T, l *logstore.Log, lowest, next uint64, want func(off uint64) []byte) {
	t.Helper()
	lo, n := l.Bounds()
	if lo != lowest || n != next {
		t.Fatalf("Bounds = %d, %d; want %d, %d", lo, n, lowest, next)
	}
	for off := lowest; off < next; off++ {
		checkRecord(t, l, off, want(off))
	}
	_, err := l.Read(context.Background(), next)
	wantRange(t, err, lowest, next)
	if lowest > 0 {
		_, err = l.Read(context.Background(), lowest-1)
		wantRange(t, err, lowest, next)
	}
}

func TestTruncateFrom(t *testing.T) {
	forFormats(t, func(t *testing.T, format func(logstore.Config) logstore.Config) { testTruncateFrom(t, format, false) })
	// Written in v1 and reopened: the v1 active segment is sealed and a v2
	// one started at 40, so the cuts below go into v1 segments and the
	// appends after them into v2 ones.
	t.Run("upgraded", func(t *testing.T) { testTruncateFrom(t, logstore.WithFormatV1, true) })
}

func testTruncateFrom(t *testing.T, format func(logstore.Config) logstore.Config, upgrade bool) {
	// 8 records per 1 KiB segment (bases 0, 8, 16, ...); 40 records make
	// 5 segments, the active one holding 32..39.
	const total = 40
	for _, policy := range []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncInterval, logstore.SyncNever} {
		for _, tc := range []struct {
			name   string
			before uint64 // TruncateBefore first, to move lowest off 0
			from   uint64
		}{
			{"at next is a no-op", 0, total},
			{"middle of the active segment", 0, 37},
			{"last record", 0, total - 1},
			{"at the active segment's base", 0, 32},
			{"at a sealed segment's base", 0, 16},
			{"inside an older sealed segment", 0, 10},
			{"first record of the log", 0, 0},
			{"at lowest after TruncateBefore", 16, 16},
			{"just past lowest after TruncateBefore", 16, 17},
		} {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := format(logstore.Config{MaxSegmentBytes: 1024, Sync: policy})
				l := openLog(t, dir, cfg)
				for i := range total {
					mustAppend(t, l, value(i, size8))
				}
				if upgrade {
					l.Close()
					cfg = logstore.Config{MaxSegmentBytes: 1024, Sync: policy}
					l = openLog(t, dir, cfg)
					if st := l.Stats(); st.Segments != 6 || st.Next != total {
						t.Fatalf("after the upgrade: %+v, want 6 segments", st)
					}
				}
				if err := l.TruncateBefore(tc.before); err != nil {
					t.Fatal(err)
				}
				lowest, _ := l.Bounds()
				if lowest != tc.before {
					t.Fatalf("TruncateBefore(%d) left lowest %d", tc.before, lowest)
				}
				if err := l.TruncateFrom(tc.from); err != nil {
					t.Fatalf("TruncateFrom(%d): %v", tc.from, err)
				}
				old := func(off uint64) []byte { return value(int(off), size8) }
				checkRange(t, l, lowest, tc.from, old)
				checkDisk(t, l, dir)

				// Appends continue at from, with other sizes than before so
				// that stale frames cannot line up with new ones.
				fresh := func(off uint64) []byte {
					if off < tc.from {
						return old(off)
					}
					return value(int(off)+1000, 50+int(off%3)*70)
				}
				for off := tc.from; off < tc.from+12; off++ {
					if got := mustAppend(t, l, fresh(off)); got != off {
						t.Fatalf("append after truncation got offset %d, want %d", got, off)
					}
				}
				checkRange(t, l, lowest, tc.from+12, fresh)
				checkDisk(t, l, dir)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openLog(t, dir, cfg)
				checkRange(t, l, lowest, tc.from+12, fresh)
				checkDisk(t, l, dir)
				// Once more, inside what was just written, then reopen.
				if err := l.TruncateFrom(tc.from + 5); err != nil {
					t.Fatal(err)
				}
				checkRange(t, l, lowest, tc.from+5, fresh)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openLog(t, dir, cfg)
				checkRange(t, l, lowest, tc.from+5, fresh)
				checkDisk(t, l, dir)
			})
		}
	}
}

func TestTruncateFromErrors(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 1024})
	for i := range 20 {
		mustAppend(t, l, value(i, size8))
	}
	if err := l.TruncateBefore(8); err != nil {
		t.Fatal(err)
	}
	lowest, _ := l.Bounds()
	for _, tc := range []struct {
		name string
		from uint64
	}{
		{"below lowest", lowest - 1},
		{"zero", 0},
		{"past next", 21},
		{"far past next", 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := l.TruncateFrom(tc.from)
			wantRange(t, err, lowest, 20)
			var re *logstore.RangeError
			if errors.As(err, &re); re.Offset != tc.from {
				t.Fatalf("RangeError offset %d, want %d", re.Offset, tc.from)
			}
			checkRange(t, l, lowest, 20, func(off uint64) []byte { return value(int(off), size8) })
		})
	}
	l.Close()
	if err := l.TruncateFrom(5); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("TruncateFrom after Close = %v", err)
	}
	if err := l.Reset(5); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("Reset after Close = %v", err)
	}
}

func TestReset(t *testing.T) {
	const total = 30
	for _, policy := range []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncNever} {
		for _, tc := range []struct {
			name    string
			records int
			next    uint64
		}{
			{"lower", total, 5},
			{"to zero", total, 0},
			{"higher", total, 1_000_000},
			{"equal", total, total},
			{"to lowest", total, 0},
			{"fresh log far ahead", 0, 1 << 40},
			{"inside the old range", total, 17},
		} {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := logstore.Config{MaxSegmentBytes: 1024, Sync: policy}
				l := openLog(t, dir, cfg)
				for i := range tc.records {
					mustAppend(t, l, value(i, 100))
				}
				if err := l.Reset(tc.next); err != nil {
					t.Fatalf("Reset(%d): %v", tc.next, err)
				}
				fresh := func(off uint64) []byte { return value(int(off%100000)+7, 60) }
				checkRange(t, l, tc.next, tc.next, fresh)
				checkDisk(t, l, dir)
				if _, err := os.Stat(filepath.Join(dir, "reset")); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("reset marker left behind: %v", err)
				}
				if tc.next > 0 {
					_, err := l.Read(context.Background(), tc.next-1)
					wantRange(t, err, tc.next, tc.next)
				}
				for off := tc.next; off < tc.next+20; off++ {
					if got := mustAppend(t, l, fresh(off)); got != off {
						t.Fatalf("append after Reset got %d, want %d", got, off)
					}
				}
				checkRange(t, l, tc.next, tc.next+20, fresh)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openLog(t, dir, cfg)
				checkRange(t, l, tc.next, tc.next+20, fresh)
				checkDisk(t, l, dir)
				// Reset an empty log that was reset before.
				if err := l.Reset(tc.next + 20); err != nil {
					t.Fatal(err)
				}
				checkRange(t, l, tc.next+20, tc.next+20, fresh)
				// And to the base of the empty active segment it just made.
				if err := l.Reset(tc.next + 20); err != nil {
					t.Fatal(err)
				}
				checkRange(t, l, tc.next+20, tc.next+20, fresh)
				checkDisk(t, l, dir)
				l.Close()
				l = openLog(t, dir, cfg)
				checkRange(t, l, tc.next+20, tc.next+20, fresh)
			})
		}
	}
}

// TestWaitAcrossTruncation: offsets at or past the cut are not there any
// more, so Wait for them waits until they are written again.
func TestWaitAcrossTruncation(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 1024})
	for i := range 20 {
		mustAppend(t, l, value(i, 100))
	}
	if err := l.TruncateFrom(10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 15); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(15) after TruncateFrom(10) = %v, want it to keep waiting", err)
	}
	if _, err := l.Read(context.Background(), 15); !errors.Is(err, logstore.ErrOutOfRange) {
		t.Fatalf("Read(15) after TruncateFrom(10) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(t.Context(), 12) }()
	for i := 10; i < 13; i++ {
		mustAppend(t, l, value(i+500, 30))
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait(12) = %v", err)
	}
	checkRecord(t, l, 12, value(512, 30))

	// Reset upwards wakes waiters below the new next.
	go func() { done <- l.Wait(t.Context(), 40) }()
	if err := l.Reset(100); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait(40) across Reset(100) = %v", err)
	}
}

// TestSnapshotReaderAcrossTruncation: a snapshot stream taken before a
// truncation fails with ErrOutOfRange rather than deliver cut or rewritten
// bytes.
func TestSnapshotReaderAcrossTruncation(t *testing.T) {
	for _, op := range []string{"truncate", "reset"} {
		t.Run(op, func(t *testing.T) {
			l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 1024})
			for i := range 20 {
				mustAppend(t, l, value(i, 100))
			}
			r := l.Reader()
			if _, err := r.Read(make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			var err error
			if op == "truncate" {
				err = l.TruncateFrom(3)
			} else {
				err = l.Reset(3)
			}
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, l, value(99, 100))
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(r); !errors.Is(err, logstore.ErrOutOfRange) {
				t.Fatalf("snapshot read across %s = %v, want ErrOutOfRange", op, err)
			}
		})
	}
}

// genValue2 is the value written at off in generation gen: readers can
// check from the bytes alone that a record is one that was written at its
// offset, whatever truncations happened since.
func genValue2(off uint64, gen int) []byte {
	v := fmt.Appendf(nil, "o%d g%d ", off, gen)
	for len(v) < 40+int(off%7)*25+gen%5*10 {
		v = append(v, byte('a'+(int(off)+gen)%26))
	}
	return v
}

func parseGen(v []byte) (off uint64, gen int, err error) {
	_, err = fmt.Sscanf(string(v), "o%d g%d ", &off, &gen)
	return off, gen, err
}

// TestReadersDuringTruncation reads while the writer appends, truncates and
// resets: every read returns a record that was written at its offset or a
// RangeError, never a CorruptError, stale bytes from a cut store or freed
// memory.
func TestReadersDuringTruncation(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				lo, next := l.Bounds()
				if lo > next {
					t.Errorf("Bounds %d > %d", lo, next)
					return
				}
				off := lo + uint64(i*7+r)%(next-lo+1)
				recs, err := l.ReadBatch(context.Background(), off, 8, 0, nil)
				var re *logstore.RangeError
				switch {
				case errors.As(err, &re):
				case err != nil:
					t.Errorf("ReadBatch(%d): %v", off, err)
					return
				}
				for i, rec := range recs {
					o, gen, err := parseGen(rec.Value)
					if err != nil || o != rec.Offset || rec.Offset != off+uint64(i) || !bytes.Equal(rec.Value, genValue2(o, gen)) {
						t.Errorf("ReadBatch(%d)[%d]: offset %d holds %.30q", off, i, rec.Offset, rec.Value)
						return
					}
				}
				if i%16 == 0 {
					var buf bytes.Buffer
					if _, err := buf.ReadFrom(l.Reader()); err != nil && !errors.Is(err, logstore.ErrOutOfRange) {
						t.Errorf("snapshot: %v", err)
						return
					}
				}
			}
		})
	}
	var next uint64
	for gen := range 300 {
		for range 5 + gen%11 {
			off, err := l.Append(t.Context(), genValue2(next, gen))
			if err != nil || off != next {
				t.Fatalf("Append = %d, %v; want %d", off, err, next)
			}
			next++
		}
		lo, _ := l.Bounds()
		switch gen % 10 {
		case 9:
			next = uint64(gen * 3)
			if err := l.Reset(next); err != nil {
				t.Fatal(err)
			}
		case 4:
			if err := l.TruncateBefore(next - 8); err != nil {
				t.Fatal(err)
			}
		default:
			from := max(lo, next-uint64(gen%13))
			if err := l.TruncateFrom(from); err != nil {
				t.Fatalf("TruncateFrom(%d): %v", from, err)
			}
			next = from
		}
	}
	cancel()
	wg.Wait()
}
