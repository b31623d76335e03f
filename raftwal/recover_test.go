package raftwal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// mountTmpfs mounts a tmpfs of size on a new directory, unmounted when the
// test ends. Without the rights to mount it skips the test, except in CI.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// unmount unmounts the tmpfs at dir. If the process still uses a file of
// it it fails the test, names the open descriptors (a leaked mapping, as
// logstore's TestTruncateFromUnmapsDamagedTimeIndex guards against, shows
// in /proc/self/maps), and detaches the mount lazily, so that no mount
// outlives the test.
func unmount(t *testing.T, dir string) {
	out, err := exec.Command("umount", dir).CombinedOutput()
	if err == nil {
		return
	}
	var inUse []string
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			inUse = append(inUse, "fd "+fd.Name()+" "+target)
		}
	}
	t.Errorf("umount %s: %v: %s; in use:\n%s", dir, err, out, strings.Join(inUse, "\n"))
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s: %v: %s", dir, err, out)
	}
}

// TestRecoverAfterDiskFull fills a small tmpfs until appends fail with
// ENOSPC, frees space, recovers, and checks that the WAL holds exactly
// what its logs were told: nothing of the failed writes, before and after
// a reopen. With several writers a failed group commit can leave whole
// records of the batch on disk, which Recover must cut.
func TestRecoverAfterDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name    string
		writers int
		runs    int // whole records of a failed batch are left only in some runs
	}{
		{"one writer", 1, 1},
		{"eight writers", 8, 3},
	} {
		for run := range tc.runs {
			t.Run(fmt.Sprintf("%s/%d", tc.name, run), func(t *testing.T) {
				testRecoverAfterDiskFull(t, tc.writers)
			})
		}
	}
}

func testRecoverAfterDiskFull(t *testing.T, writers int) {
	mnt := mountTmpfs(t, "1m")
	// A filler on the same tmpfs, deleted to free space for the recovery.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	// The logs' directories (their incarnation files) are on the ordinary
	// disk: only the WAL runs out of space. The last log only watches.
	h := newTestWALConfig(t, Config{
		Dir:          filepath.Join(mnt, "wal"),
		Root:         t.TempDir(),
		SegmentBytes: 64 << 10,
		CompactEvery: time.Hour,
	}, writers+1)
	models := make([]*model, len(h.logs))
	for i := range models {
		models[i] = newModel()
	}
	idle, mi := h.logs[writers], models[writers]
	mustAppend(t, idle, mi, []byte("before"), []byte("the failure"))
	if err := h.w.Recover(); err != nil {
		t.Fatalf("Recover of a healthy WAL: %v", err)
	}
	mustAppend(t, idle, mi, []byte("after a no-op Recover"))

	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { errs[i] = fillUntilFailure(h.logs[i], models[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, logstore.ErrFailed) {
			t.Fatalf("writer %d: the failed append returned %v, want an error wrapping ErrFailed", i, err)
		}
	}
	checkAllLogs(t, "after the failed appends", h.logs, models)
	if _, err := idle.AppendBatch(ctx, [][]byte{[]byte("refused")}); err == nil {
		t.Fatal("an append to the failed WAL succeeded")
	}
	checkLog(t, "idle log after a refused append", idle, mi)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := h.w.Recover(); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	// Only the idle log appends before the reopen: an append to a writer's
	// log would overwrite, on replay, the entries of a failed record that
	// Recover left in the WAL.
	mustAppend(t, idle, mi, []byte("after Recover"))
	checkAllLogs(t, "after Recover", h.logs, models)
	h.reopen()
	checkAllLogs(t, "after a reopen", h.logs, models)
	for i, l := range h.logs {
		mustAppend(t, l, models[i], []byte("after the reopen"))
	}
	checkAllLogs(t, "after the reopen and an append to each log", h.logs, models)
}

// fillUntilFailure appends batches of two 4 KiB values to l (and m) until
// an append fails, and returns that append's error. It runs in its own
// goroutine: it reports with errors, not t.Fatal.
func fillUntilFailure(l *Log, m *model) error {
	value := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for range 1000 { // 8 MB: far more than the tmpfs holds
		_, before := l.Bounds()
		first, err := l.AppendBatch(ctx, [][]byte{value, value})
		if err != nil {
			if _, next := l.Bounds(); next != before {
				return fmt.Errorf("the failed append moved next from %d to %d", before, next)
			}
			return err
		}
		if want := m.append([][]byte{value, value}); first != want {
			return fmt.Errorf("AppendBatch = %d, want %d", first, want)
		}
	}
	return errors.New("8 MB appended to a 1 MiB tmpfs and no append failed")
}
