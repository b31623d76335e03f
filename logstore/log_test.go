package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proglog/proglog/logstore"
)

func TestAppendRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sync   logstore.SyncPolicy
		sizes  []int
		segMax int64
	}{
		{"always one", logstore.SyncAlways, []int{10}, 0},
		{"empty values", logstore.SyncAlways, []int{0, 0, 1, 0}, 0},
		{"never many", logstore.SyncNever, []int{1, 7, 8, 9, 100, 1000, 4096}, 0},
		{"interval", logstore.SyncInterval, []int{100, 200}, 0},
		{"rolls", logstore.SyncNever, repeat(300, 50), 2048},
		{"max record", logstore.SyncAlways, []int{1 << 20, 1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := logstore.Config{Sync: tc.sync, MaxSegmentBytes: tc.segMax}
			l := openLog(t, dir, cfg)
			for i, n := range tc.sizes {
				if off := mustAppend(t, l, value(i, n)); off != uint64(i) {
					t.Fatalf("Append %d got offset %d", i, off)
				}
			}
			check := func(l *logstore.Log) {
				t.Helper()
				lo, next := l.Bounds()
				if lo != 0 || next != uint64(len(tc.sizes)) {
					t.Fatalf("Bounds = %d, %d; want 0, %d", lo, next, len(tc.sizes))
				}
				for i, n := range tc.sizes {
					checkRecord(t, l, uint64(i), value(i, n))
				}
				_, err := l.Read(context.Background(), uint64(len(tc.sizes)))
				wantRange(t, err, 0, uint64(len(tc.sizes)))
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			check(openLog(t, dir, cfg))
		})
	}
}

func repeat(n, times int) []int {
	s := make([]int, times)
	for i := range s {
		s[i] = n
	}
	return s
}

func TestAppendBatchAndReadBatch(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 4096})
	var want [][]byte
	for b := range 10 {
		var vals [][]byte
		for i := range b + 1 {
			vals = append(vals, value(len(want)+i, 50+i))
		}
		base, err := l.AppendBatch(t.Context(), vals)
		if err != nil {
			t.Fatal(err)
		}
		if base != uint64(len(want)) {
			t.Fatalf("batch %d base %d, want %d", b, base, len(want))
		}
		want = append(want, vals...)
	}
	for _, tc := range []struct {
		name                 string
		maxRecords, maxBytes int
	}{
		{"one", 1, 0}, {"ten", 10, 0}, {"bytes", 100, 120}, {"tiny bytes", 100, 1}, {"all", 1000, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []logstore.Record
			for off := uint64(0); off < uint64(len(want)); {
				n := len(got)
				var err error
				got, err = l.ReadBatch(context.Background(), off, tc.maxRecords, tc.maxBytes, got)
				if err != nil {
					t.Fatalf("ReadBatch(%d): %v", off, err)
				}
				if len(got) == n || len(got)-n > max(tc.maxRecords, 1) {
					t.Fatalf("ReadBatch(%d) returned %d records", off, len(got)-n)
				}
				off += uint64(len(got) - n)
			}
			for i, r := range got {
				if r.Offset != uint64(i) || !bytes.Equal(r.Value, want[i]) {
					t.Fatalf("record %d = %d %q", i, r.Offset, r.Value)
				}
			}
		})
	}
	if _, err := l.AppendBatch(t.Context(), nil); err == nil {
		t.Fatal("empty batch accepted")
	}
}

func TestLimitsAndClosed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, logstore.Config{MaxRecordBytes: 100})
	if _, err := l.Append(t.Context(), make([]byte, 101)); !errors.Is(err, logstore.ErrRecordTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, err := l.AppendBatch(t.Context(), [][]byte{{1}, make([]byte, 101)}); !errors.Is(err, logstore.ErrRecordTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, next := l.Bounds(); next != 0 {
		t.Fatalf("rejected records were written: next %d", next)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := logstore.Open(dir, logstore.Config{}); err == nil {
		t.Fatal("second Open of a locked directory succeeded")
	}
	mustAppend(t, l, []byte("x"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(t.Context(), []byte("x")); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.Read(context.Background(), 0); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := l.Wait(t.Context(), 5); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  logstore.Config
	}{
		{"small segment", logstore.Config{MaxSegmentBytes: 10}},
		{"huge segment", logstore.Config{MaxSegmentBytes: 1 << 40}},
		{"negative record", logstore.Config{MaxRecordBytes: -1}},
		{"bad policy", logstore.Config{Sync: 7}},
		{"negative retention", logstore.Config{RetentionBytes: -1}},
		{"negative age", logstore.Config{RetentionAge: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := logstore.Open(t.TempDir(), tc.cfg); err == nil {
				t.Fatal("Open accepted an invalid config")
			}
		})
	}
	for _, s := range []string{"always", "interval", "never"} {
		p, err := logstore.ParseSyncPolicy(s)
		if err != nil || p.String() != s {
			t.Fatalf("ParseSyncPolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := logstore.ParseSyncPolicy("sometimes"); err == nil {
		t.Fatal("ParseSyncPolicy accepted nonsense")
	}
}

func TestWait(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{})
	mustAppend(t, l, []byte("a"))
	if err := l.Wait(t.Context(), 0); err != nil {
		t.Fatalf("Wait for an existing offset: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with no record = %v", err)
	}

	const waiters = 8
	errs := make(chan error, waiters)
	var started sync.WaitGroup
	for i := range waiters {
		started.Add(1)
		go func() {
			started.Done()
			errs <- l.Wait(t.Context(), uint64(1+i%3))
		}()
	}
	started.Wait()
	for i := range 3 {
		mustAppend(t, l, value(i, 10))
	}
	for range waiters {
		if err := <-errs; err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}

	closed := make(chan error, 1)
	go func() { closed <- l.Wait(t.Context(), 100) }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("Wait across Close = %v", err)
	}
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 8192})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	var seen sync.Map // offset -> value acknowledged for it
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				v := value(w*each+i, 40)
				off, err := l.Append(t.Context(), v)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				seen.Store(off, v)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			var off uint64
			for off < writers*each {
				if err := l.Wait(ctx, off); err != nil {
					return
				}
				recs, err := l.ReadBatch(context.Background(), off, 64, 0, nil)
				if err != nil {
					t.Errorf("ReadBatch(%d): %v", off, err)
					return
				}
				off += uint64(len(recs))
			}
		})
	}
	wg.Wait()
	readers.Wait()
	cancel()
	for off := range uint64(writers * each) {
		v, ok := seen.Load(off)
		if !ok {
			t.Fatalf("offset %d never acknowledged", off)
		}
		checkRecord(t, l, off, v.([]byte))
	}
}

func TestTruncateBeforeAndRetention(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var clock sync.Mutex
	cfg := logstore.Config{
		MaxSegmentBytes: 1024,
		Sync:            logstore.SyncNever,
		Now: func() time.Time {
			clock.Lock()
			defer clock.Unlock()
			return now
		},
	}
	advance := func(d time.Duration) {
		clock.Lock()
		now = now.Add(d)
		clock.Unlock()
	}
	dir := t.TempDir()
	l := openLog(t, dir, cfg)
	for i := range 40 { // 120-byte frames, 9 per 1 KiB segment
		mustAppend(t, l, value(i, 100))
	}
	st := l.Stats()
	if st.Segments < 5 {
		t.Fatalf("Stats %+v: want several segments", st)
	}
	if err := l.TruncateBefore(10); err != nil {
		t.Fatal(err)
	}
	lo, next := l.Bounds()
	if lo > 10 || lo == 0 || next != 40 {
		t.Fatalf("after TruncateBefore(10) bounds %d, %d", lo, next)
	}
	_, err := l.Read(context.Background(), 0)
	wantRange(t, err, lo, 40)
	checkRecord(t, l, 10, value(10, 100))
	if err := l.TruncateBefore(1000); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Segments != 1 || st.Next != 40 {
		t.Fatalf("TruncateBefore past the end: %+v", st)
	}
	l.Close()

	// Age: segments whose newest record is older than the limit go.
	dir = t.TempDir()
	cfg.RetentionAge = time.Hour
	l = openLog(t, dir, cfg)
	for i := range 20 {
		mustAppend(t, l, value(i, 100))
	}
	advance(2 * time.Hour)
	for i := 20; i < 30; i++ {
		mustAppend(t, l, value(i, 100))
	}
	if err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	lo, _ = l.Bounds()
	if lo < 14 || lo > 20 {
		t.Fatalf("age retention kept from %d, want the segments holding 20.. kept and old ones gone", lo)
	}
	checkRecord(t, l, 20, value(20, 100))
	l.Close()

	// Bytes: retention keeps the store total near the limit, and runs on roll.
	dir = t.TempDir()
	cfg.RetentionAge = 0
	cfg.RetentionBytes = 3000
	l = openLog(t, dir, cfg)
	for i := range 100 {
		mustAppend(t, l, value(i, 100))
	}
	st = l.Stats()
	if st.SizeBytes > 3000+1024 || st.Lowest == 0 {
		t.Fatalf("byte retention: %+v", st)
	}
	for off := st.Lowest; off < st.Next; off++ {
		checkRecord(t, l, off, value(int(off), 100))
	}
	l.Close()
	l = openLog(t, dir, cfg)
	if got := l.Stats(); got != st {
		t.Fatalf("reopened stats %+v, want %+v", got, st)
	}
}

// TestSetRetention changes retention on an open log: turned on later it
// applies at once, and off it keeps everything again.
func TestSetRetention(t *testing.T) {
	cfg := logstore.Config{MaxSegmentBytes: 1024}
	l := openLog(t, t.TempDir(), cfg)
	for i := range 100 {
		mustAppend(t, l, value(i, 100))
	}
	if lo, _ := l.Bounds(); lo != 0 {
		t.Fatalf("without retention the log starts at %d", lo)
	}
	if err := l.SetRetention(3000, 0); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.SizeBytes > 3000+1024 || st.Lowest == 0 {
		t.Fatalf("after SetRetention(3000): %+v", st)
	}
	if err := l.SetRetention(0, 0); err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 200; i++ {
		mustAppend(t, l, value(i, 100))
	}
	if got := l.Stats(); got.Lowest != st.Lowest {
		t.Fatalf("retention turned off still deleted: lowest %d, was %d", got.Lowest, st.Lowest)
	}
	if err := l.SetRetention(-1, 0); err == nil {
		t.Fatal("negative retention accepted")
	}
	l.Close()
	if err := l.SetRetention(1, 0); !errors.Is(err, logstore.ErrClosed) {
		t.Fatalf("SetRetention after Close: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	l := openLog(t, dir, logstore.Config{Registerer: reg})
	for i := range 5 {
		mustAppend(t, l, value(i, 10))
	}
	if n, err := testutil.GatherAndCount(reg, "proglog_logstore_appended_records_total", "proglog_logstore_fsync_seconds", "proglog_logstore_next_offset"); err != nil || n != 3 {
		t.Fatalf("GatherAndCount = %d, %v", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "proglog_logstore_appended_records_total" && mf.Metric[0].Counter.GetValue() != 5 {
			t.Fatalf("appended records %v", mf.Metric[0].Counter.GetValue())
		}
	}
	l.Close()
	// Close unregisters, so the same registry takes a reopened log.
	openLog(t, dir, logstore.Config{Registerer: reg})
}

func TestSnapshotReader(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, logstore.Config{MaxSegmentBytes: 2048, Sync: logstore.SyncNever})
	for i := range 30 {
		mustAppend(t, l, value(i, 100))
	}
	if err := l.TruncateBefore(15); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(l.Reader()); err != nil {
		t.Fatal(err)
	}
	// The stream is the store files concatenated.
	var want []byte
	entries, _ := filepath.Glob(filepath.Join(dir, "*.store"))
	for _, e := range entries {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("snapshot has %d bytes, store files %d", buf.Len(), len(want))
	}
	lo, _ := l.Bounds()
	for i := lo; i < 30; i++ {
		if !bytes.Contains(want, value(int(i), 100)) {
			t.Fatalf("snapshot lacks record %d", i)
		}
	}
}

// TestReadersDuringDeletion reads while segments are deleted under the
// readers: every read returns the right record or a RangeError, never other
// errors or freed memory (segments are reference counted).
func TestReadersDuringDeletion(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever})
	const total = 2000
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				lo, next := l.Bounds()
				if next == 0 {
					continue
				}
				off := lo + uint64(i*7+r)%(next-lo+1)
				recs, err := l.ReadBatch(context.Background(), off, 8, 0, nil)
				var re *logstore.RangeError
				switch {
				case errors.As(err, &re):
					if off >= re.Lowest && off < re.Next {
						t.Errorf("RangeError %v for an offset inside its own range", re)
						return
					}
				case err != nil:
					t.Errorf("ReadBatch(%d): %v", off, err)
					return
				}
				for _, rec := range recs {
					if !bytes.Equal(rec.Value, value(int(rec.Offset), 100)) {
						t.Errorf("offset %d served wrong bytes", rec.Offset)
						return
					}
				}
			}
		})
	}
	for i := range total {
		mustAppend(t, l, value(i, 100))
		if i%50 == 49 {
			if err := l.TruncateBefore(uint64(i - 20)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancel()
	wg.Wait()
	lo, next := l.Bounds()
	if next != total || lo == 0 {
		t.Fatalf("bounds %d, %d", lo, next)
	}
}

// TestLowerMaxRecordBytes: records written under a larger limit stay
// readable and are not mistaken for a torn tail after the limit is lowered.
func TestLowerMaxRecordBytes(t *testing.T) {
	dir := t.TempDir()
	writeLogValues := func() {
		l := openLog(t, dir, logstore.Config{MaxRecordBytes: 5000, MaxSegmentBytes: 8192})
		for i := range 10 {
			mustAppend(t, l, value(i, 3000))
		}
		l.Close()
	}
	writeLogValues()
	l := openLog(t, dir, logstore.Config{MaxRecordBytes: 100, MaxSegmentBytes: 8192})
	if _, next := l.Bounds(); next != 10 {
		t.Fatalf("next %d after lowering MaxRecordBytes, want 10", next)
	}
	for i := range 10 {
		checkRecord(t, l, uint64(i), value(i, 3000))
	}
	if _, err := l.Append(t.Context(), make([]byte, 101)); !errors.Is(err, logstore.ErrRecordTooLarge) {
		t.Fatalf("append over the new limit = %v", err)
	}
}

// TestSnapshotRestoreRoundTrip: a snapshot stream restored into another
// directory opens as the same log (Restore is how replicas install it).
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	cfg := logstore.Config{MaxSegmentBytes: 2048}
	l := openLog(t, t.TempDir(), cfg)
	for i := range 40 {
		mustAppend(t, l, value(i, 100+i))
	}
	if err := l.TruncateBefore(12); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if _, err := snap.ReadFrom(l.Reader()); err != nil {
		t.Fatal(err)
	}
	lo, next := l.Bounds()
	dst := filepath.Join(t.TempDir(), "restored")
	if err := logstore.Restore(dst, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	r := openLog(t, dst, cfg)
	if rlo, rnext := r.Bounds(); rlo != lo || rnext != next {
		t.Fatalf("restored bounds %d, %d; want %d, %d", rlo, rnext, lo, next)
	}
	for off := lo; off < next; off++ {
		checkRecord(t, r, off, value(int(off), 100+int(off)))
	}
	if off := mustAppend(t, r, []byte("more")); off != next {
		t.Fatalf("append after restore got %d", off)
	}
	b := snap.Bytes()
	b[len(b)-3] ^= 1
	if err := logstore.Restore(filepath.Join(t.TempDir(), "bad"), bytes.NewReader(b)); !errors.Is(err, logstore.ErrCorrupt) {
		t.Fatalf("Restore of a damaged stream = %v, want ErrCorrupt", err)
	}
}
