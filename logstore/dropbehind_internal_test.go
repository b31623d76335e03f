package logstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/proglog/proglog/internal/pagecache"
)

// TestDropBehind: with DropBehind set, under every policy, the pages more
// than DropBehind bytes behind the end leave the page cache once written
// (checked with mincore where the filesystem has a page cache of its own;
// under SyncInterval and SyncNever they are written back first), the rest
// stay, and every record still reads back.
func TestDropBehind(t *testing.T) {
	const behind = 256 << 10
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 300<<10) }
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, Config{Sync: policy, SyncInterval: time.Hour, MaxSegmentBytes: 64 << 20, DropBehind: behind})
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
				case dropped > size-behind && dropped > 0 || dropped%pageSize != 0:
					t.Fatalf("append %d: %d bytes written, dropped up to %d: within the last %d bytes, or not at a page boundary", i, size, dropped, behind)
				case size-behind-dropped >= hintEvery+pageSize:
					t.Fatalf("append %d: %d bytes written, dropped only up to %d", i, size, dropped)
				}
			}
			size, dropped := state()
			if dropped == 0 {
				t.Fatalf("%d bytes written, nothing dropped", size)
			}
			checkResident(t, active().storePath, size, dropped-maxFolio, size-behind)
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
			if dropped > size-behind || size-behind-dropped >= hintEvery+pageSize {
				t.Fatalf("after a truncation: %d bytes written, dropped up to %d", size, dropped)
			}
		})
	}
}

// TestDropBehindAcrossSegments: the window is the log's, not a segment's:
// sealed segments wholly behind it leave the page cache entirely, those
// within it stay, and a reader catching up from the start drops what it
// read behind the window but not the window itself.
func TestDropBehindAcrossSegments(t *testing.T) {
	const (
		behind  = 6 << 20
		segSize = 4 << 20
		n       = 200 // of 100 KiB: five segments
	)
	value := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100<<10) }
	l, err := Open(t.TempDir(), Config{Sync: SyncInterval, SyncInterval: time.Hour, MaxSegmentBytes: segSize, DropBehind: behind})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		if _, err := l.Append(context.Background(), value(i)); err != nil {
			t.Fatal(err)
		}
	}
	// ahead[i] is how many bytes of the log follow segment i's end.
	l.flushMu.Lock()
	segs := l.segs.Load().segs
	ahead := make([]int64, len(segs))
	for i := len(segs) - 2; i >= 0; i-- {
		ahead[i] = ahead[i+1] + segs[i+1].size
	}
	l.flushMu.Unlock()
	if len(segs) < 4 {
		t.Fatalf("%d segments; the test needs some wholly behind the window and some in it", len(segs))
	}
	// After the writes, a segment partly in the window has lost the pages
	// up to the last drop (but for a large folio across its end), which
	// lags the window's start by less than a step; after a read from the
	// start, also in whole steps of hintEvery.
	check := func(when string, read bool) {
		t.Helper()
		for i, s := range segs[:len(segs)-1] {
			dropped := s.dropped
			cached := max(0, s.size-(behind-ahead[i])) // the window's part of s starts here
			switch {
			case ahead[i] >= behind && dropped != s.size:
				t.Errorf("%s: segment %d is %d bytes behind the end, dropped only up to %d of %d", when, i, ahead[i], dropped, s.size)
			case ahead[i] >= behind:
				checkResident(t, s.storePath, s.size, s.size, s.size)
			case dropped <= cached-hintEvery-pageSize:
				t.Errorf("%s: segment %d's window starts at %d, dropped only up to %d", when, i, cached, dropped)
			default:
				gone := dropped - maxFolio
				if read {
					gone = dropped&^(hintEvery-1) - maxFolio
				}
				checkResident(t, s.storePath, s.size, gone, cached)
			}
		}
	}
	check("written", false)

	var b Batch
	for off := uint64(0); off < n; off += uint64(len(b.Records)) {
		if err := l.ReadInto(context.Background(), off, 4, 0, &b); err != nil {
			t.Fatal(err)
		}
		for j, r := range b.Records {
			if !bytes.Equal(r.Value, value(int(off)+j)) {
				t.Fatalf("record %d read back wrong", int(off)+j)
			}
		}
	}
	check("read from the start", true)
}

// checkResident asks the kernel which of the store's first size bytes are
// cached: none in a page wholly below gone, all from kept on. A filesystem
// without a page cache of its own (tmpfs) ignores the hints; there nothing
// is checked.
func checkResident(t *testing.T, path string, size, gone, kept int64) {
	t.Helper()
	if tmpfs, err := pagecache.Tmpfs(path); err != nil {
		t.Fatal(err)
	} else if tmpfs {
		t.Logf("%s is on a tmpfs: page residency not checked", path)
		return
	}
	pages, _, err := pagecache.Resident(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, resident := range pages {
		switch off := int64(p) * pageSize; {
		case off >= size:
		case off+pageSize <= gone && resident:
			t.Fatalf("%s: page at %d is still cached; none below %d of %d bytes should be", path, off, gone, size)
		case off >= kept && !resident:
			t.Fatalf("%s: page at %d is not cached; every one from %d of %d bytes should be", path, off, kept, size)
		}
	}
}
