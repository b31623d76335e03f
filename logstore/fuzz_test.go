package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// FuzzRecover damages a store or index file of a small two-segment log with
// arbitrary bytes and opens it. Nothing may panic, Open may only fail with
// ErrCorrupt, and every record served must be one that was written. The
// log is in the current format (v2: its index entries are positions alone,
// so a frame's extent comes from the next entry or the store's end).
func FuzzRecover(f *testing.F) {
	// Index entries of the sealed segment (file 0; v2: 4 bytes each): point one
	// into a frame, past the store, at an earlier frame; cut and grow it.
	f.Add(byte(0), byte(0), uint16(36), []byte{40, 0, 0, 0})
	f.Add(byte(0), byte(0), uint16(40), []byte{0xff, 0xff, 0, 0})
	f.Add(byte(0), byte(0), uint16(44), []byte{32, 0, 0, 0})
	f.Add(byte(0), byte(1), uint16(38), []byte{})
	f.Add(byte(0), byte(2), uint16(0), []byte{0, 4, 0, 0})
	fuzzRecover(f, logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever, MaxRecordBytes: 4096})
}

// FuzzRecoverV1 is FuzzRecover for a log in format version 1.
func FuzzRecoverV1(f *testing.F) {
	fuzzRecover(f, logstore.WithFormatV1(logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever, MaxRecordBytes: 4096}))
}

func fuzzRecover(f *testing.F, cfg logstore.Config) {
	sizes := []int{0, 5, 60, 17, 100, 3, 200, 9, 90, 40, 33, 70, 12, 150, 1, 80, 7, 64}
	src := f.TempDir()
	l, err := logstore.Open(src, cfg)
	if err != nil {
		f.Fatal(err)
	}
	for i, n := range sizes {
		if _, err := l.Append(f.Context(), value(i, n)); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		f.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}

	// input: file selector, mode (overwrite, truncate, append), position, bytes
	f.Add(byte(0), byte(0), uint16(40), []byte{0xff})
	f.Add(byte(1), byte(1), uint16(100), []byte{})
	f.Add(byte(2), byte(0), uint16(0), []byte("PLOGSTOR"))
	f.Add(byte(3), byte(2), uint16(0), bytes.Repeat([]byte{0}, 64))
	f.Add(byte(2), byte(2), uint16(0), []byte{1, 0, 0, 0, 4, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0})
	f.Add(byte(3), byte(0), uint16(40), []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, which, mode byte, pos uint16, data []byte) {
		dir := t.TempDir()
		for _, name := range names {
			b, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				t.Fatal(err)
			}
			if name == names[int(which)%len(names)] {
				p := min(int(pos), len(b))
				switch mode % 3 {
				case 0:
					b = append(b[:p:p], append(data, b[min(p+len(data), len(b)):]...)...)
				case 1:
					b = b[:p]
				case 2:
					b = append(b, data...)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		l, err := logstore.Open(dir, cfg)
		if err != nil {
			if !errors.Is(err, logstore.ErrCorrupt) {
				t.Fatalf("Open failed with %v, want ErrCorrupt", err)
			}
			return
		}
		defer l.Close()
		lo, next := l.Bounds()
		if next > uint64(len(sizes)) {
			t.Fatalf("next %d: records appeared that were never written", next)
		}
		for off := lo; off < next; off++ {
			rec, err := l.Read(context.Background(), off)
			if err != nil {
				if !errors.Is(err, logstore.ErrCorrupt) {
					t.Fatalf("Read(%d): %v", off, err)
				}
				continue
			}
			if !bytes.Equal(rec.Value, value(int(off), sizes[off])) {
				t.Fatalf("Read(%d) served %q, never written", off, rec.Value)
			}
		}
		off, err := l.Append(t.Context(), []byte("fresh"))
		if err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if off != next {
			t.Fatalf("Append got %d, want %d", off, next)
		}
		if rec, err := l.Read(context.Background(), off); err != nil || string(rec.Value) != "fresh" {
			t.Fatalf("Read back %q, %v", rec.Value, err)
		}
	})
}

// FuzzTimeIndex feeds arbitrary bytes to the time index decoder, as a
// damaged file would: nothing may panic, and whatever it accepts has
// entries in order (offsets and positions rising) past the store header.
func FuzzTimeIndex(f *testing.F) {
	dir := f.TempDir()
	l, err := logstore.Open(dir, logstore.WithTimeEvery(logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever}, 100))
	if err != nil {
		f.Fatal(err)
	}
	for i := range 40 {
		if _, err := l.Append(f.Context(), value(i, 40)); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.timeindex"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no time index files: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".timeindex"), 10, 64)
		if err != nil {
			f.Fatal(err)
		}
		if _, _, err := logstore.DecodeTimeIndex(b, base); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add(b, base)
		f.Add(b[:len(b)-5], base)
	}
	f.Fuzz(func(t *testing.T, b []byte, base uint64) {
		deltas, pos, err := logstore.DecodeTimeIndex(b, base)
		if err != nil {
			return
		}
		for i := range deltas {
			if pos[i] < 32 || (i > 0 && (deltas[i] <= deltas[i-1] || pos[i] <= pos[i-1])) {
				t.Fatalf("accepted entry %d: offset delta %d at %d after %v %v", i, deltas[i], pos[i], deltas[:i], pos[:i])
			}
		}
	})
}
