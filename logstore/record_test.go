package logstore_test

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

// sameRecord compares everything a record carries except aliasing.
func sameRecord(t *testing.T, got, want logstore.Record) {
	t.Helper()
	if got.Offset != want.Offset || !got.Time.Equal(want.Time) || !bytes.Equal(got.Key, want.Key) ||
		!bytes.Equal(got.Value, want.Value) || len(got.Headers) != len(want.Headers) {
		t.Fatalf("record %d = %+v, want %+v", want.Offset, got, want)
	}
	for i := range want.Headers {
		if got.Headers[i].Key != want.Headers[i].Key || !bytes.Equal(got.Headers[i].Value, want.Headers[i].Value) {
			t.Fatalf("record %d header %d = %+v, want %+v", want.Offset, i, got.Headers[i], want.Headers[i])
		}
	}
}

func keyedRecords(n int, start time.Time) []logstore.Record {
	recs := make([]logstore.Record, n)
	for i := range recs {
		r := logstore.Record{Time: start.Add(time.Duration(i/3) * time.Millisecond), Value: value(i, 20+i%50)}
		switch i % 4 {
		case 1:
			r.Key = fmt.Appendf(nil, "key-%d", i)
		case 2:
			r.Headers = []logstore.Header{{Key: "trace", Value: []byte{byte(i)}}, {Key: "trace", Value: nil}}
		case 3:
			r.Key = []byte{0, 1}
			r.Headers = []logstore.Header{{Key: "ü", Value: value(i, 5)}}
		}
		recs[i] = r
	}
	return recs
}

// TestRecordsRoundTrip appends records with and without key and headers,
// with given times, and reads them back the ways a log can be read: from
// the open log, after reopening, and from a snapshot stream restored into
// another directory.
func TestRecordsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cfg := logstore.Config{MaxSegmentBytes: 2048}
	l := openLog(t, dir, cfg)
	want := keyedRecords(200, time.Unix(1_700_000_000, 0))
	for i := 0; i < len(want); i += 7 {
		base, err := l.AppendRecords(t.Context(), want[i:min(i+7, len(want))])
		if err != nil || base != uint64(i) {
			t.Fatalf("AppendRecords = %d, %v", base, err)
		}
	}
	for i := range want {
		want[i].Offset = uint64(i)
	}
	check := func(l *logstore.Log) {
		t.Helper()
		for off := 0; off < len(want); {
			recs, err := l.ReadBatch(context.Background(), uint64(off), 16, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				sameRecord(t, r, want[off])
				off++
			}
		}
	}
	check(l)
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("only %d segments: the test wants records across segment boundaries", st.Segments)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	check(l)

	restored := filepath.Join(t.TempDir(), "restored")
	if err := logstore.Restore(restored, l.Reader()); err != nil {
		t.Fatal(err)
	}
	check(openLog(t, restored, cfg))
}

func TestRecordSizeLimit(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxRecordBytes: 10})
	for _, tc := range []struct {
		name string
		rec  logstore.Record
		ok   bool
	}{
		{"value at the limit", logstore.Record{Value: make([]byte, 10)}, true},
		{"key counts", logstore.Record{Key: []byte("k"), Value: make([]byte, 10)}, false},
		{"header key counts", logstore.Record{Headers: []logstore.Header{{Key: "abcdef"}}, Value: make([]byte, 5)}, false},
		{"header value counts", logstore.Record{Headers: []logstore.Header{{Key: "a", Value: make([]byte, 5)}}, Value: make([]byte, 4)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.AppendRecords(t.Context(), []logstore.Record{tc.rec})
			if (err == nil) != tc.ok {
				t.Fatalf("AppendRecords = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestStampedTimesNeverDecrease: a clock that steps back does not make the
// log's times go back, so lookups by time stay right.
func TestStampedTimesNeverDecrease(t *testing.T) {
	now := time.Unix(1000, 0)
	l := openLog(t, t.TempDir(), logstore.Config{Now: func() time.Time { return now }})
	mustAppend(t, l, []byte("a"))
	now = now.Add(-time.Hour)
	mustAppend(t, l, []byte("b"))
	rec, err := l.Read(context.Background(), 1)
	if err != nil || !rec.Time.Equal(time.Unix(1000, 0)) {
		t.Fatalf("Read(1) time = %v, %v; want the earlier record's time", rec.Time, err)
	}
	off, err := l.OffsetForTime(t.Context(), time.Unix(1000, 0))
	if err != nil || off != 0 {
		t.Fatalf("OffsetForTime = %d, %v", off, err)
	}
}

// TestReadBatchKeyedAllocations: a batch read of records that all carry
// headers allocates its read buffer and one header slab, sized up front
// from the first record, not a slab that doubles its way up.
func TestReadBatchKeyedAllocations(t *testing.T) {
	l, err := logstore.Open(t.TempDir(), logstore.Config{Sync: logstore.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs := make([]logstore.Record, 1000)
	for i := range recs {
		recs[i] = logstore.Record{Key: []byte("0123456789abcdef"), Value: value(i, 100),
			Headers: []logstore.Header{{Key: "header-00000", Value: []byte("12345678")}, {Key: "header-00001", Value: []byte("12345678")}}}
	}
	if _, err := l.AppendRecords(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	dst := make([]logstore.Record, 0, len(recs))
	allocs := testing.AllocsPerRun(20, func() {
		if dst, err = l.ReadBatch(context.Background(), 0, len(recs), 0, dst[:0]); err != nil || len(dst) != len(recs) {
			t.Fatalf("ReadBatch: %d records, %v", len(dst), err)
		}
	})
	if allocs > 3 {
		t.Errorf("ReadBatch of %d keyed records: %.0f allocations, want at most 3 (the buffer, the slab, one spare)", len(recs), allocs)
	}
	sameRecord(t, dst[999], logstore.Record{Offset: 999, Time: dst[999].Time, Key: recs[999].Key, Value: recs[999].Value, Headers: recs[999].Headers})
}

// TestReadInto: a Batch read again and again gives what ReadBatch gives,
// across segments and record shapes, and reuses its memory: after the
// first batch, reading like records allocates nothing.
func TestReadInto(t *testing.T) {
	forFormats(t, func(t *testing.T, format func(logstore.Config) logstore.Config) {
		l := openLog(t, t.TempDir(), format(logstore.Config{Sync: logstore.SyncNever, MaxSegmentBytes: 64 << 10}))
		var recs []logstore.Record
		for i := range 2000 {
			r := logstore.Record{Value: value(i, 100)}
			if i%3 != 0 {
				r.Key = []byte(fmt.Sprintf("key-%d", i))
			}
			for h := range i % 4 {
				r.Headers = append(r.Headers, logstore.Header{Key: fmt.Sprintf("h%d", h), Value: value(i+h, 8)})
			}
			recs = append(recs, r)
		}
		if _, err := l.AppendRecords(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		var b logstore.Batch
		for off := uint64(0); off < uint64(len(recs)); {
			want, err := l.ReadBatch(t.Context(), off, 97, 4096, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.ReadInto(t.Context(), off, 97, 4096, &b); err != nil {
				t.Fatal(err)
			}
			if len(b.Records) != len(want) {
				t.Fatalf("ReadInto at %d: %d records, ReadBatch %d", off, len(b.Records), len(want))
			}
			for i := range want {
				sameRecord(t, b.Records[i], want[i])
			}
			off += uint64(len(want))
		}
		if err := l.ReadInto(t.Context(), uint64(len(recs)), 1, 0, &b); !errors.Is(err, logstore.ErrOutOfRange) {
			t.Fatalf("ReadInto past the end = %v, want ErrOutOfRange", err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			if err := l.ReadInto(context.Background(), 100, 300, 0, &b); err != nil || len(b.Records) == 0 {
				t.Fatalf("ReadInto: %d records, %v", len(b.Records), err)
			}
		})
		if allocs > 0 {
			t.Errorf("ReadInto into a used Batch: %.0f allocations, want none", allocs)
		}
	})
}
