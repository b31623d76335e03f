package logstore

import (
	"os"
	"testing"
	"time"
)

// TestTimeIndexUsed: lookups in a sealed segment get its samples from its
// file (mapped on first use), the active segment's from memory, and a
// missing or damaged file gives none, so the lookup searches without.
func TestTimeIndexUsed(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{MaxSegmentBytes: 4096, Sync: SyncNever, timeEvery: 200}
	open := func() *Log {
		l, err := Open(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	start := time.Unix(1_700_000_000, 0)
	for i := range 300 {
		if _, err := l.AppendRecords(t.Context(), []Record{{Time: start.Add(time.Duration(i) * time.Second), Value: make([]byte, 40)}}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l = open()
	segs := l.segs.Load().segs
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	for i, s := range segs {
		if n := s.timeSamples().len(); n < 2 {
			t.Fatalf("segment %d (active %v): %d samples", s.base, i == len(segs)-1, n)
		}
		// The walk finds every record's time between two samples.
		for off := s.base; off < s.base+s.count; off++ {
			got, ok, err := l.searchSegment(t.Context(), l.segs.Load(), s, s.base+s.count, start.Add(time.Duration(off)*time.Second).UnixNano())
			if err != nil || !ok || got != off {
				t.Fatalf("searchSegment for record %d = %d, %v, %v", off, got, ok, err)
			}
		}
	}
	l.Close()
	if err := os.Remove(timeIndexPath(segs[0].storePath)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(timeIndexPath(segs[1].storePath), []byte("PLOGTIME"), 0o644); err != nil {
		t.Fatal(err)
	}
	l = open()
	defer l.Close()
	segs = l.segs.Load().segs
	for i, s := range segs[:3] {
		if n, want := s.timeSamples().len(), i == 2; (n > 0) != want {
			t.Fatalf("segment %d: %d samples after its file was removed or damaged", s.base, n)
		}
	}
	for i := range 301 {
		off, err := l.OffsetForTime(t.Context(), start.Add(time.Duration(i)*time.Second))
		if err != nil || off != uint64(i) {
			t.Fatalf("OffsetForTime(record %d's time) = %d, %v", i, off, err)
		}
	}
}
