package logstore_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// testdata/v1log was written by the previous version of this package
// (commit 19ea568, format version 1): 20 records in segments of 1 KiB,
// bases 0 and 8 sealed, 16 active with four records; every third record
// has a key and a header.
const v1Records = 20

func v1Record(i int) logstore.Record {
	r := logstore.Record{Offset: uint64(i), Time: time.Unix(1_700_000_000+int64(i), 0),
		Value: fmt.Appendf(nil, "v1-record-%02d-%s", i, bytes.Repeat([]byte{'.'}, 80))}
	if i%3 == 1 {
		r.Key = fmt.Appendf(nil, "key-%d", i)
		r.Headers = []logstore.Header{{Key: "h", Value: []byte{byte(i)}}}
	}
	return r
}

func newRecord(i int) logstore.Record {
	return logstore.Record{Offset: uint64(i), Time: time.Unix(1_800_000_000+int64(i), 0), Value: value(i, 40+i%50)}
}

// storeVersion is the format version in a store file's header.
func storeVersion(t *testing.T, dir string, base uint64) uint16 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%020d.store", base)))
	if err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint16(b[8:10])
}

// checkRecords reads [lo, hi) one by one and in one batch per segment.
func checkRecords(t *testing.T, l *logstore.Log, lo, hi uint64, want func(i int) logstore.Record) {
	t.Helper()
	if gotLo, gotHi := l.Bounds(); gotLo != lo || gotHi != hi {
		t.Fatalf("Bounds = %d, %d; want %d, %d", gotLo, gotHi, lo, hi)
	}
	for off := lo; off < hi; off++ {
		got, err := l.Read(t.Context(), off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		sameRecord(t, got, want(int(off)))
	}
	for off := lo; off < hi; {
		recs, err := l.ReadBatch(t.Context(), off, 100, 0, nil)
		if err != nil {
			t.Fatalf("ReadBatch(%d): %v", off, err)
		}
		for _, got := range recs {
			sameRecord(t, got, want(int(got.Offset)))
		}
		off += uint64(len(recs))
	}
}

// TestUpgradeFromV1 opens a log written by the previous version: its
// segments stay v1, the active one is sealed and a v2 one started; the
// mixed log appends, reads, truncates (into v1 segments too), streams a
// snapshot and restarts.
func TestUpgradeFromV1(t *testing.T) {
	dir := logstore.CopyLogDir(t, "testdata/v1log")
	cfg := logstore.Config{MaxSegmentBytes: 1024}
	l := openLog(t, dir, cfg)
	st := l.Stats()
	if st.Next != v1Records || st.Segments != 4 {
		t.Fatalf("after opening the v1 log: %+v, want 20 records in 4 segments (the v1 active one sealed)", st)
	}
	checkRecords(t, l, 0, v1Records, v1Record)
	if v := storeVersion(t, dir, v1Records); v != 2 {
		t.Fatalf("new segment has format version %d", v)
	}
	if v := storeVersion(t, dir, 16); v != 1 {
		t.Fatalf("old segment rewritten: version %d", v)
	}

	mixed := func(i int) logstore.Record {
		if i < v1Records {
			return v1Record(i)
		}
		return newRecord(i)
	}
	for i := v1Records; i < 40; i++ {
		if _, err := l.AppendRecords(t.Context(), []logstore.Record{newRecord(i)}); err != nil {
			t.Fatal(err)
		}
	}
	checkRecords(t, l, 0, 40, mixed)
	if off, err := l.OffsetForTime(t.Context(), time.Unix(1_700_000_010, 0)); err != nil || off != 10 {
		t.Fatalf("OffsetForTime in v1 segments = %d, %v", off, err)
	}
	if off, err := l.OffsetForTime(t.Context(), time.Unix(1_800_000_030, 0)); err != nil || off != 30 {
		t.Fatalf("OffsetForTime in v2 segments = %d, %v", off, err)
	}

	// The snapshot stream of a mixed log checks and restores.
	var stream bytes.Buffer
	if _, err := stream.ReadFrom(l.Reader()); err != nil {
		t.Fatal(err)
	}
	if err := logstore.Verify(bytes.NewReader(stream.Bytes())); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	if err := logstore.Restore(restored, bytes.NewReader(stream.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r := openLog(t, restored, cfg)
	checkRecords(t, r, 0, 40, mixed)
	r.Close()

	// Into a sealed v1 segment: the kept part stays v1 and is sealed, the
	// appends go to a new v2 segment.
	if err := l.TruncateFrom(18); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, 0, 18, mixed)
	for i := 18; i < 25; i++ {
		if _, err := l.AppendRecords(t.Context(), []logstore.Record{newRecord(i)}); err != nil {
			t.Fatal(err)
		}
	}
	after := func(i int) logstore.Record {
		if i < 18 {
			return v1Record(i)
		}
		return newRecord(i)
	}
	checkRecords(t, l, 0, 25, after)
	if v := storeVersion(t, dir, 18); v != 2 {
		t.Fatalf("segment after the cut has format version %d", v)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	checkRecords(t, l, 0, 25, after)

	// At a v1 segment's base: it is left empty and rewritten as v2.
	if err := l.TruncateFrom(8); err != nil {
		t.Fatal(err)
	}
	if v := storeVersion(t, dir, 8); v != 2 {
		t.Fatalf("emptied segment has format version %d", v)
	}
	for i := 8; i < 12; i++ {
		if _, err := l.AppendRecords(t.Context(), []logstore.Record{newRecord(i)}); err != nil {
			t.Fatal(err)
		}
	}
	again := func(i int) logstore.Record {
		if i < 8 {
			return v1Record(i)
		}
		return newRecord(i)
	}
	checkRecords(t, l, 0, 12, again)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	checkRecords(t, l, 0, 12, again)
	if st := l.Stats(); st.Segments != 2 {
		t.Fatalf("%+v, want the v1 segment 0 and the v2 segment 8", st)
	}
}
