package logstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// TestRepairFromAnotherCopy: a flipped byte in a sealed segment is found by
// a read (which names the record), and the record from another copy
// rewrites the frame in place: reads, a reopened log and a snapshot's hard
// link to the segment all see the repaired record. A replacement that is
// not the same record, or a frame that is not damaged, is refused.
func TestRepairFromAnotherCopy(t *testing.T) { forFormats(t, testRepairFromAnotherCopy) }

func testRepairFromAnotherCopy(t *testing.T, format func(logstore.Config) logstore.Config) {
	dir := t.TempDir()
	cfg := format(logstore.Config{MaxSegmentBytes: 2048})
	l := openLog(t, dir, cfg)
	want := keyedRecords(60, time.Unix(1_700_000_000, 0))
	if _, err := l.AppendRecords(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].Offset = uint64(i)
	}
	const damaged = 5 // in the first, sealed, segment
	linked := filepath.Join(t.TempDir(), "snapshot")
	if err := os.MkdirAll(linked, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := l.Link(linked); err != nil {
		t.Fatal(err)
	}

	// Flip one byte of the record's value: the last byte of its frame's
	// payload, found from the reader's own error after a first flip of the
	// frame start + 30 (inside the payload).
	first := filepath.Join(dir, "00000000000000000000.store")
	var pos int64
	for off := range damaged {
		r, _ := l.Read(t.Context(), uint64(off))
		pos += logstore.FrameSize(cfg, len(r.Value)+len(r.Key)+headerBytes(r))
	}
	f, err := os.OpenFile(first, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	at := 32 + pos + 30
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, err = l.Read(t.Context(), damaged)
	var ce *logstore.CorruptError
	if !errors.As(err, &ce) || !ce.HasRecord || ce.Record != damaged {
		t.Fatalf("read of the damaged record: %v, want a CorruptError naming record %d", err, damaged)
	}
	for _, tc := range []struct {
		name string
		rec  logstore.Record
	}{
		{"a longer record", func() logstore.Record { r := want[damaged]; r.Value = append(r.Value, 'x'); return r }()},
		{"no time", func() logstore.Record { r := want[damaged]; r.Time = time.Time{}; return r }()},
		{"past the end", logstore.Record{Offset: 1000, Time: time.Unix(1, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.Repair(tc.rec); err == nil {
				t.Fatal("Repair accepted it")
			}
		})
	}
	if err := l.Repair(want[damaged]); err != nil {
		t.Fatalf("Repair: %v", err)
	}
	if err := l.Repair(want[damaged]); !errors.Is(err, logstore.ErrNotDamaged) {
		t.Fatalf("second Repair: %v, want ErrNotDamaged", err)
	}
	if err := l.Repair(want[damaged+1]); !errors.Is(err, logstore.ErrNotDamaged) {
		t.Fatalf("Repair of a sound record: %v, want ErrNotDamaged", err)
	}
	check := func(l *logstore.Log) {
		t.Helper()
		for _, w := range want {
			got, err := l.Read(t.Context(), w.Offset)
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, got, w)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(openLog(t, dir, cfg))
	// The snapshot's link is the same file.
	got, err := os.ReadFile(filepath.Join(linked, "00000000000000000000.store"))
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := os.ReadFile(first)
	if err != nil || string(got[:len(fixed)]) != string(fixed) {
		t.Fatalf("the snapshot's link was not repaired with the store: %v", err)
	}
}

func headerBytes(r logstore.Record) int {
	if len(r.Key) == 0 && len(r.Headers) == 0 {
		return 0
	}
	n := 1 + 1 // key length and header count, both small here
	for _, h := range r.Headers {
		n += 2 + len(h.Key) + len(h.Value)
	}
	return n
}
