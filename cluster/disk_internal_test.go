package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
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
	})
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
	if err := m.annotate(errors.New(`unable to store logs: "cluster: disk full: x"`)); !errors.Is(err, ErrDiskFull) || strings.Count(err.Error(), "disk full") != 1 {
		t.Fatalf("annotate = %v", err)
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
