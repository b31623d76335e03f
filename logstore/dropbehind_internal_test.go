package logstore

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropBehind: under SyncAlways with DropBehind set, the synced pages
// more than DropBehind bytes behind the end leave the page cache (checked
// with mincore where the filesystem has a page cache of its own), the rest
// stay, and every record still reads back; under the other policies nothing
// is dropped (their pages may be dirty).
func TestDropBehind(t *testing.T) {
	const behind = 256 << 10
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 300<<10) }
	for _, tc := range []struct {
		policy SyncPolicy
		drops  bool
	}{
		{SyncAlways, true},
		{SyncInterval, false},
		{SyncNever, false},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, Config{Sync: tc.policy, SyncInterval: time.Hour, MaxSegmentBytes: 64 << 20, DropBehind: behind})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			active := func() *segment { segs := l.segs.Load().segs; return segs[len(segs)-1] }
			state := func() (size, dropped int64) {
				l.flushMu.Lock()
				defer l.flushMu.Unlock()
				s := active()
				return s.size, s.dropped
			}
			const n = 30
			for i := range n {
				if _, err := l.Append(context.Background(), value(i)); err != nil {
					t.Fatal(err)
				}
				size, dropped := state()
				switch {
				case !tc.drops && dropped != 0:
					t.Fatalf("append %d: %s dropped pages up to %d", i, tc.policy, dropped)
				case tc.drops && (dropped > size-behind && dropped > 0 || dropped%pageSize != 0):
					t.Fatalf("append %d: %d bytes written, dropped up to %d: within the last %d bytes, or not at a page boundary", i, size, dropped, behind)
				case tc.drops && size-behind-dropped >= hintEvery+pageSize:
					t.Fatalf("append %d: %d bytes written, dropped only up to %d", i, size, dropped)
				}
			}
			size, dropped := state()
			if tc.drops {
				checkResident(t, active().storePath, size, dropped, behind)
			}
			for i := range n {
				r, err := l.Read(context.Background(), uint64(i))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(r.Value, value(i)) {
					t.Fatalf("record %d read back wrong after its pages were dropped", i)
				}
			}
			// A truncation below the point dropped: later appends drop
			// from where the segment now ends.
			if err := l.TruncateFrom(1); err != nil {
				t.Fatal(err)
			}
			for i := range 6 {
				if _, err := l.Append(context.Background(), value(i)); err != nil {
					t.Fatal(err)
				}
			}
			size, dropped = state()
			if tc.drops && (dropped > size-behind || size-behind-dropped >= hintEvery+pageSize) {
				t.Fatalf("after a truncation: %d bytes written, dropped up to %d", size, dropped)
			}
		})
	}
}

// checkResident maps the store and asks the kernel which of its pages are
// cached: none below dropped (but for a large folio across it), all of the
// last behind bytes. A filesystem
// without a page cache of its own (tmpfs) ignores the hint; there only the
// bookkeeping is checked.
func checkResident(t *testing.T, path string, size, dropped, behind int64) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Logf("%s is on a tmpfs: page residency not checked", path)
		return
	}
	if dropped == 0 {
		t.Fatalf("%d bytes written, nothing dropped", size)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+pageSize-1)/pageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	for p, v := range vec {
		off := int64(p) * pageSize
		switch resident := v&1 == 1; {
		case off+pageSize <= dropped-maxFolio && resident:
			t.Fatalf("page at %d is still cached; dropped up to %d of %d bytes", off, dropped, size)
		case off >= size-behind && !resident:
			t.Fatalf("page at %d is not cached; it is within the last %d bytes of %d", off, behind, size)
		}
	}
}
