package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
)

func TestDiskMonitor(t *testing.T) {
	var free atomic.Uint64
	var recovers atomic.Int32
	var recoverErr atomic.Pointer[error]
	m := newDiskMonitor([]string{"/data"}, 100, 1000, slog.New(slog.DiscardHandler), func() error {
		recovers.Add(1)
		if p := recoverErr.Load(); p != nil {
			return *p
		}
		return nil
	}, nil)
	statfs := func(string) (uint64, error) { return free.Load(), nil }
	m.statfs.Store(&statfs)

	free.Store(5000)
	if err := m.check(); err != nil {
		t.Fatalf("check with room = %v", err)
	}
	free.Store(99)
	m.probe() // check probes by itself only when the last probe is stale or near the reserve
	if err := m.check(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "99 bytes free") {
		t.Fatalf("check below the reserve = %v", err)
	}
	free.Store(5000)
	if err := m.check(); err != nil { // 99 was near the reserve: it probed
		t.Fatalf("check with room again = %v", err)
	}

	// A failed write: refused until a probe finds recoverFree and the
	// Raft log reopens.
	enospc := fmt.Errorf("write x: %w", syscall.ENOSPC)
	if !m.noteWriteErr(enospc) || m.noteWriteErr(errors.New("EIO")) {
		t.Fatal("noteWriteErr does not tell ENOSPC from other errors")
	}
	free.Store(500) // above the reserve, below recoverFree
	m.probe()
	if err := m.check(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "no space left") || recovers.Load() != 0 {
		t.Fatalf("check after ENOSPC with little room = %v (recovers %d)", err, recovers.Load())
	}
	stored := fmt.Errorf("unable to store logs within log store, err: %w", fmt.Errorf("%w: %w", ErrDiskFull, enospc))
	if err := m.annotate(stored); !errors.Is(err, ErrDiskFull) || strings.Count(err.Error(), "disk full") != 1 {
		t.Fatalf("annotate of the store's error = %v", err)
	}
	if err := m.annotate(raft.ErrLeadershipLost); !errors.Is(err, ErrDiskFull) || !errors.Is(err, raft.ErrLeadershipLost) {
		t.Fatalf("annotate of an append lost with the leadership = %v", err)
	}
	if err := m.leaderless("", ""); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("leaderless on a full disk = %v", err)
	}
	if err := m.leaderless("10.0.0.2:8400", "n2"); err != nil {
		t.Fatalf("leaderless with a leader elsewhere = %v", err)
	}
	failed := errors.New("reopen failed")
	recoverErr.Store(&failed)
	free.Store(5000)
	m.probe()
	if err := m.check(); !errors.Is(err, ErrDiskFull) || recovers.Load() == 0 {
		t.Fatalf("check while the Raft log cannot reopen = %v (recovers %d)", err, recovers.Load())
	}
	recoverErr.Store(nil)
	m.probe()
	if err := m.check(); err != nil || m.isFull() {
		t.Fatalf("check once the Raft log reopened = %v", err)
	}
	if err := m.annotate(enospc); errors.Is(err, ErrDiskFull) {
		t.Fatalf("annotate with room = %v", err)
	}
}

// Monitors sharing a DiskWatch are probed together, with one statfs per
// file system per round; one with a swapped statfs (a test's) measures on
// its own; a stopped one is no longer probed.
func TestDiskWatchSharesProbes(t *testing.T) {
	w := &DiskWatch{monitors: map[*diskMonitor]struct{}{}} // rounds run by hand
	root := t.TempDir()
	var calls atomic.Int32
	var free atomic.Uint64
	free.Store(5000)
	counting := func(string) (uint64, error) { calls.Add(1); return free.Load(), nil }
	var ms []*diskMonitor
	for i := range 3 {
		dir := filepath.Join(root, fmt.Sprint("p", i))
		dirs := []string{dir, filepath.Join(dir, "raft"), filepath.Join(dir, "log")}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		m := newDiskMonitor(dirs, 100, 1000, slog.New(slog.DiscardHandler), func() error { return nil }, w)
		m.statfs.Store(&counting)
		m.start()
		ms = append(ms, m)
	}
	if got := calls.Load(); got != 9 {
		t.Fatalf("starting 3 monitors of 3 directories made %d statfs calls, want 9 (each probes at once)", got)
	}
	calls.Store(0)
	free.Store(50) // below the reserve
	w.round()
	if got := calls.Load(); got != 1 {
		t.Fatalf("a round over 3 monitors on one file system made %d statfs calls, want 1", got)
	}
	for i, m := range ms {
		if !errors.Is(m.check(), ErrDiskFull) {
			t.Fatalf("monitor %d did not learn the round's measure", i)
		}
	}

	own := func(string) (uint64, error) { calls.Add(1); return 7000, nil }
	ms[2].statfs.Store(&own)
	ms[2].custom.Store(true)
	calls.Store(0)
	w.round()
	if got := calls.Load(); got != 4 {
		t.Fatalf("a round with one monitor measuring on its own made %d statfs calls, want 1 shared + 3 own", got)
	}
	if ms[2].check() != nil || !errors.Is(ms[0].check(), ErrDiskFull) {
		t.Fatal("a monitor's own measure leaked into the shared one, or the other way round")
	}

	for _, m := range ms {
		m.stop()
	}
	calls.Store(0)
	w.round()
	if got := calls.Load(); got != 0 {
		t.Fatalf("stopped monitors were probed: %d statfs calls", got)
	}
}
