package logstore

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueBlocked starts n appenders while the flush lock is held and returns
// once all n records are queued, so the next flush must carry them all.
func queueBlocked(t *testing.T, l *Log, n int) (release func(), results chan error) {
	t.Helper()
	results = make(chan error, n)
	l.flushMu.Lock()
	for i := range n {
		go func() {
			_, err := l.Append(context.Background(), []byte{byte(i)})
			results <- err
		}()
	}
	for range 100_000 {
		l.mu.Lock()
		queued := l.pending.n
		l.mu.Unlock()
		if queued == uint64(n) {
			return l.flushMu.Unlock, results
		}
		runtime.Gosched()
	}
	l.flushMu.Unlock()
	t.Fatal("appenders never queued")
	return nil, nil
}

func fsyncCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "proglog_logstore_fsync_seconds" {
			return mf.Metric[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no fsync histogram")
	return 0
}

// TestGroupCommit: appends queued while a flush is under way share the next
// write and fdatasync.
func TestGroupCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := Open(t.TempDir(), Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := fsyncCount(t, reg)
	release, results := queueBlocked(t, l, 32)
	release()
	for range 32 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if got := fsyncCount(t, reg) - before; got != 1 {
		t.Fatalf("32 queued appends took %d fdatasyncs, want 1", got)
	}
	if _, next := l.Bounds(); next != 32 {
		t.Fatalf("next %d", next)
	}
}

// TestWriteFailureIsFatal: a failed write fails every append of its batch
// and every later one, never acknowledges past it, and keeps reads working.
func TestWriteFailureIsFatal(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, Config{Sync: policy})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, err := l.Append(t.Context(), []byte("kept")); err != nil {
				t.Fatal(err)
			}
			// Swap the active store for a read-only handle: writes fail with EBADF.
			set := l.segs.Load()
			seg := set.segs[len(set.segs)-1]
			ro, err := os.Open(seg.storePath)
			if err != nil {
				t.Fatal(err)
			}
			l.flushMu.Lock()
			rw := seg.store
			seg.store = ro
			l.flushMu.Unlock()
			defer rw.Close()

			const n = 8
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					_, err := l.Append(t.Context(), []byte{byte(i)})
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, ErrFailed) {
					t.Fatalf("append during failure = %v, want ErrFailed", err)
				}
			}
			if _, err := l.Append(t.Context(), []byte("later")); !errors.Is(err, ErrFailed) {
				t.Fatalf("later append = %v, want ErrFailed", err)
			}
			if _, next := l.Bounds(); next != 1 {
				t.Fatalf("next advanced to %d past a failed write", next)
			}
			if rec, err := l.Read(context.Background(), 0); err != nil || string(rec.Value) != "kept" {
				t.Fatalf("Read(0) = %q, %v", rec.Value, err)
			}
			if err := l.Close(); !errors.Is(err, ErrFailed) && err != nil {
				t.Fatalf("Close = %v", err)
			}
			l2, err := Open(dir, Config{})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer l2.Close()
			if off, err := l2.Append(t.Context(), []byte("again")); err != nil || off != 1 {
				t.Fatalf("append after reopen = %d, %v", off, err)
			}
		})
	}
}

// TestSyncInterval: under SyncInterval appends return before any fdatasync
// and the background loop syncs the dirty store soon after.
func TestSyncInterval(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := Open(t.TempDir(), Config{Registerer: reg, Sync: SyncInterval, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(t.Context(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Eventually, not by a deadline: bounded by the test timeout.
	for fsyncCount(t, reg) == 0 {
		time.Sleep(time.Millisecond)
	}
	l.flushMu.Lock()
	dirty := l.segs.Load().segs[0].dirty
	l.flushMu.Unlock()
	if dirty {
		t.Fatal("store still dirty after the periodic fdatasync")
	}
}
