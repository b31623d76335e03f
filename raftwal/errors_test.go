package raftwal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestOpenErrors: Open refuses directories outside Root and a log that is
// open already.
func TestOpenErrors(t *testing.T) {
	h := newTestWAL(t, 1, 4096)
	for _, tc := range []struct {
		name string
		dir  string
	}{
		{"outside root", filepath.Join(t.TempDir(), "elsewhere")},
		{"parent of root", filepath.Dir(h.cfg.Root)},
		{"escapes root by ..", filepath.Join(h.cfg.Root, "..", "sibling")},
		{"relative", "relative/dir"},
		{"open already", h.dirs[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := h.w.Open(tc.dir); err == nil {
				l.Close()
				t.Fatalf("Open(%s) succeeded", tc.dir)
			}
		})
	}
	// The refused directories outside Root got no incarnation file.
	if _, err := os.Stat(filepath.Join(filepath.Dir(h.cfg.Root), "sibling")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a directory outside Root created it: %v", err)
	}
}

// TestOpenWALConfig: Dir and Root are required.
func TestOpenWALConfig(t *testing.T) {
	tmp := t.TempDir()
	for _, cfg := range []Config{{Root: tmp}, {Dir: tmp}} {
		if w, err := OpenWAL(cfg); err == nil {
			w.Close()
			t.Fatalf("OpenWAL(%+v) succeeded", cfg)
		}
	}
}

// TestClosedLog: every method of a closed log fails with ErrClosed, and
// so does Open once the WAL is closed.
func TestClosedLog(t *testing.T) {
	h := newTestWAL(t, 1, 4096)
	l := h.logs[0]
	m := newModel()
	mustAppend(t, l, m, []byte("a"), []byte("b"), []byte("c"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Read", func() error { _, err := l.Read(ctx, 1); return err }},
		{"ReadBatch", func() error { _, err := l.ReadBatch(ctx, 0, 10, 1<<20, nil); return err }},
		{"AppendBatch", func() error { _, err := l.AppendBatch(ctx, [][]byte{[]byte("d")}); return err }},
		{"TruncateFrom", func() error { return l.TruncateFrom(1) }},
		{"TruncateBefore", func() error { return l.TruncateBefore(2) }},
		{"Reset", func() error { return l.Reset(7) }},
		{"Close", l.Close},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, logstore.ErrClosed) {
				t.Fatalf("%s of a closed log: %v, want ErrClosed", tc.name, err)
			}
		})
	}
	// Nothing changed: the log opens again as it was.
	l, err := h.w.Open(h.dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	h.logs[0] = l
	checkLog(t, "reopened log", l, m)
	h.close()
	if l, err := h.w.Open(h.dirs[0]); !errors.Is(err, logstore.ErrClosed) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open after the WAL's Close: %v, want ErrClosed", err)
	}
}

// TestClosedLogNoopTruncation: a truncation that would change nothing
// must still fail on a closed log, as on a logstore.Log, instead of
// telling the caller it succeeded.
func TestClosedLogNoopTruncation(t *testing.T) {
	h := newTestWAL(t, 1, 4096)
	l := h.logs[0]
	mustAppend(t, l, newModel(), []byte("a"), []byte("b"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"TruncateFrom(next)", func() error { return l.TruncateFrom(2) }},
		{"TruncateBefore(lowest)", func() error { return l.TruncateBefore(0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, logstore.ErrClosed) {
				t.Fatalf("%s of a closed log: %v, want ErrClosed", tc.name, err)
			}
		})
	}
}

// TestAppendBatchEmpty: a batch of no values is refused and changes
// nothing.
func TestAppendBatchEmpty(t *testing.T) {
	h := newTestWAL(t, 1, 4096)
	m := newModel()
	mustAppend(t, h.logs[0], m, []byte("a"))
	for _, values := range [][][]byte{nil, {}} {
		if first, err := h.logs[0].AppendBatch(ctx, values); err == nil {
			t.Fatalf("AppendBatch(%v) = %d, nil; want an error", values, first)
		}
	}
	checkLog(t, "after the empty batches", h.logs[0], m)
}
