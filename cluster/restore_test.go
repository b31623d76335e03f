package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// These exercise logstore.Restore (logstore/restore.go, owned by this
// package's author) through logstore's public API.

func smallStore(t *testing.T, dir string, records int) *logstore.Log {
	t.Helper()
	l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range records {
		if _, err := l.Append(t.Context(), fmt.Appendf(nil, "record %d %s", i, bytes.Repeat([]byte{'x'}, i%50))); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func snapshotBytes(t *testing.T, l *logstore.Log) []byte {
	t.Helper()
	b, err := io.ReadAll(l.Reader())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestoreRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		records  int
		truncate uint64 // TruncateBefore before the snapshot
		existing int    // records already in the target directory (a stale node)
	}{
		{"empty log", 0, 0, 0},
		{"one segment", 5, 0, 0},
		{"many segments", 200, 0, 0},
		{"after retention", 200, 120, 0},
		{"onto a stale node", 200, 0, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := smallStore(t, t.TempDir(), tt.records)
			defer src.Close()
			if tt.truncate > 0 {
				if err := src.TruncateBefore(tt.truncate); err != nil {
					t.Fatal(err)
				}
			}
			snap := snapshotBytes(t, src)
			dir := filepath.Join(t.TempDir(), "log")
			if tt.existing > 0 {
				stale := smallStore(t, dir, tt.existing)
				stale.Close()
			}
			if err := logstore.Restore(dir, bytes.NewReader(snap)); err != nil {
				t.Fatal(err)
			}
			dst, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if a, b := src.Stats(), dst.Stats(); a.Lowest != b.Lowest || a.Next != b.Next || a.Segments != b.Segments {
				t.Fatalf("restored stats %+v, source %+v", b, a)
			}
			_, want := readAll(t, src)
			_, got := readAll(t, dst)
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatal("restored records differ")
			}
			// The restored log takes appends at the right offset.
			off, err := dst.Append(t.Context(), []byte("next"))
			if err != nil || off != src.Stats().Next {
				t.Fatalf("append after restore: %d, %v; want %d", off, err, src.Stats().Next)
			}
		})
	}
}

func TestRestoreRejectsDamage(t *testing.T) {
	src := smallStore(t, t.TempDir(), 100)
	defer src.Close()
	snap := snapshotBytes(t, src)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"flipped value byte", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"truncated inside a frame", func(b []byte) []byte { return b[:len(b)-3] }},
		{"damaged header", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"garbage after the end", func(b []byte) []byte { return append(b, 7, 0, 0, 0) }},
		{"segment missing", func(b []byte) []byte {
			i := bytes.Index(b[8:], []byte("PLOGSTOR"))
			j := bytes.Index(b[8+i+8:], []byte("PLOGSTOR"))
			return append(b[:8+i], b[8+i+8+j:]...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log")
			old := smallStore(t, dir, 3)
			old.Close()
			err := logstore.Restore(dir, bytes.NewReader(tt.mutate(slices.Clone(snap))))
			if !errors.Is(err, logstore.ErrCorrupt) {
				t.Fatalf("Restore = %v, want ErrCorrupt", err)
			}
			// The old log is untouched.
			l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, next := l.Bounds(); next != 3 {
				t.Fatalf("old log ends at %d after a failed restore, want 3", next)
			}
		})
	}
}

func FuzzRestore(f *testing.F) {
	dir := f.TempDir()
	l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 1024})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 40 {
		if _, err := l.Append(f.Context(), fmt.Appendf(nil, "value %d", i)); err != nil {
			f.Fatal(err)
		}
	}
	seed, err := io.ReadAll(l.Reader())
	l.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := filepath.Join(t.TempDir(), "log")
		if err := logstore.Restore(dir, bytes.NewReader(b)); err != nil {
			return
		}
		// Whatever Restore accepted must open and read back cleanly.
		l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 1024})
		if err != nil {
			t.Fatalf("open after an accepted restore: %v", err)
		}
		defer l.Close()
		readAll(t, l)
	})
}
