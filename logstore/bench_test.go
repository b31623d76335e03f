package logstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

var benchSizes = []int{100, 1024}

// BenchmarkRawWrite is the baseline: the same values written back to back to
// a plain file with one write call each, no framing, no fsync.
func BenchmarkRawWrite(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			v := value(1, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := f.Write(v); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, b.N)
		})
	}
}

func reportRecords(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendNoSync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: logstore.SyncNever})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			v := value(1, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := l.Append(b.Context(), v); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, b.N)
		})
	}
}

// BenchmarkAppendSyncAlways measures durable appends of 100 B records from
// concurrent writers sharing fdatasyncs (group commit).
func BenchmarkAppendSyncAlways(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: logstore.SyncAlways})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			v := value(1, 100)
			b.SetBytes(100)
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				wg.Go(func() {
					for range n {
						if _, err := l.Append(b.Context(), v); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportRecords(b, b.N)
		})
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, policy := range []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncNever} {
		b.Run(fmt.Sprintf("sync=%s/records=64/size=100", policy), func(b *testing.B) {
			l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: policy})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := make([][]byte, 64)
			for i := range batch {
				batch[i] = value(i, 100)
			}
			b.SetBytes(64 * 100)
			for b.Loop() {
				if _, err := l.AppendBatch(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, b.N*64)
		})
	}
}

// filledLog makes a log of n records of size bytes with SyncNever.
func filledLog(b *testing.B, dir string, n, size int) {
	b.Helper()
	l, err := logstore.Open(dir, logstore.Config{Sync: logstore.SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = value(i, size)
	}
	for i := 0; i < n; i += len(batch) {
		if _, err := l.AppendBatch(b.Context(), batch[:min(len(batch), n-i)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRead(b *testing.B) {
	const records, size = 200_000, 100
	dir := b.TempDir()
	filledLog(b, dir, records, size)
	l, err := logstore.Open(dir, logstore.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.Run("sequential-batch", func(b *testing.B) {
		b.SetBytes(size)
		readSequentially(b, l, records)
	})
	b.Run("random", func(b *testing.B) {
		b.SetBytes(size)
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, err := l.Read(context.Background(), r.Uint64N(records)); err != nil {
				b.Fatal(err)
			}
		}
		reportRecords(b, b.N)
	})
}

// readSequentially reads the log's records from offset 0 in batches of 256,
// round and round; each loop iteration accounts for one record.
func readSequentially(b *testing.B, l *logstore.Log, records uint64) {
	var buf []logstore.Record
	var off uint64
	n := 0
	for b.Loop() {
		if n > 0 {
			n--
			continue
		}
		var err error
		buf, err = l.ReadBatch(b.Context(), off%records, 256, 1<<20, buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		off += uint64(len(buf))
		n = len(buf) - 1
	}
	reportRecords(b, b.N)
}

// BenchmarkOpen1GiB opens a 1 GiB log (16 sealed segments of 64 MiB plus the
// active one): only the active segment is scanned.
func BenchmarkOpen1GiB(b *testing.B) {
	dir := b.TempDir()
	const size = 4000
	filledLog(b, dir, (1<<30)/size, size)
	for b.Loop() {
		start := time.Now()
		l, err := logstore.Open(dir, logstore.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms/open")
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// recordBatch is a batch of 100-byte records with a 16-byte key and two
// small headers, or none: the shapes issue #11 compares.
func recordBatch(n int, keyed bool) []logstore.Record {
	recs := make([]logstore.Record, n)
	for i := range recs {
		recs[i].Value = value(i, 100)
		if keyed {
			recs[i].Key = fmt.Appendf(nil, "customer-%07d", i)
			recs[i].Headers = []logstore.Header{{Key: "content-type", Value: []byte("application/json")}, {Key: "source", Value: []byte("checkout")}}
		}
	}
	return recs
}

// BenchmarkAppendRecords appends batches of 64 records of either shape.
func BenchmarkAppendRecords(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		for _, policy := range []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncNever} {
			b.Run(fmt.Sprintf("sync=%s/keyed=%t", policy, keyed), func(b *testing.B) {
				l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: policy})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				batch := recordBatch(64, keyed)
				for b.Loop() {
					if _, err := l.AppendRecords(b.Context(), batch); err != nil {
						b.Fatal(err)
					}
				}
				reportRecords(b, b.N*64)
			})
		}
	}
}

// BenchmarkReadRecords reads 200,000 records of either shape sequentially,
// 256 per batch.
func BenchmarkReadRecords(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprintf("keyed=%t", keyed), func(b *testing.B) {
			const records = 200_000
			l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: logstore.SyncNever})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := recordBatch(1000, keyed)
			for range records / len(batch) {
				if _, err := l.AppendRecords(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			readSequentially(b, l, records)
		})
	}
}

// BenchmarkOffsetForTime looks up random times in a log of
// PROGLOG_BENCH_TIME_GIB GiB (default 1) of 100-byte records, one
// millisecond apart, with the page cache warm, and cold (dropped before
// each lookup, root only). One op is one lookup.
func BenchmarkOffsetForTime(b *testing.B) {
	gib := 1.0
	if s := os.Getenv("PROGLOG_BENCH_TIME_GIB"); s != "" {
		var err error
		if gib, err = strconv.ParseFloat(s, 64); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	start := time.Unix(1_700_000_000, 0)
	l, err := logstore.Open(dir, logstore.Config{Sync: logstore.SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := recordBatch(4096, false)
	var n int64
	for l.Stats().SizeBytes < int64(gib*(1<<30)) {
		for i := range batch {
			batch[i].Time = start.Add(time.Duration(n) * time.Millisecond)
			n++
		}
		if _, err := l.AppendRecords(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d records, %d segments, %.1f GiB", n, l.Stats().Segments, float64(l.Stats().SizeBytes)/(1<<30))
	r := rand.New(rand.NewPCG(3, 4))
	lookup := func(b *testing.B) {
		want := r.Int64N(n)
		off, err := l.OffsetForTime(b.Context(), start.Add(time.Duration(want)*time.Millisecond))
		if err != nil || off != uint64(want) {
			b.Fatalf("OffsetForTime = %d, %v; want %d", off, err, want)
		}
	}
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			lookup(b)
		}
	})
	// Cold: the page cache is dropped before every lookup (root only), so
	// each probe reads the disk, as the first lookup after a restart does;
	// an untimed lookup of the first record then brings back the program's
	// own pages, which a running server has in memory.
	b.Run("cold", func(b *testing.B) {
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
				b.Skipf("cannot drop the page cache: %v", err)
			}
			if _, err := l.OffsetForTime(b.Context(), start); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			lookup(b)
		}
	})
}
