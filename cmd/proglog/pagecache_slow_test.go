//go:build slow

package main_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/proglog/proglog/internal/pagecache"
)

// TestPageCacheTail: with --page-cache-tail, a node's record store keeps
// in the page cache only about that much of its end once written, and a
// consumer reading it all from the start leaves no more behind; by default
// every page the produce wrote stays cached. The kernel is asked which
// pages are cached (mincore) for every store file.
func TestPageCacheTail(t *testing.T) {
	bin := sharedBinary(t)
	const records = 250_000 // of 100 B: ~34 MB of store in 4 MiB segments
	for _, tt := range []struct {
		name  string
		flags []string
		check func(t *testing.T, cached, total int64)
	}{
		{"default keeps every page", nil, func(t *testing.T, cached, total int64) {
			if cached < total*9/10 {
				t.Errorf("%d of %d store bytes cached; want nearly all", cached, total)
			}
		}},
		{"1MiB tail", []string{"--page-cache-tail", "1MiB"}, func(t *testing.T, cached, total int64) {
			// The tail, and at most a drop's step (1 MiB) and a large
			// folio (2 MiB) each for the writer and the reader.
			if cached > 7<<20 {
				t.Errorf("%d of %d store bytes cached; want at most the 1 MiB tail and 6 MiB of slack", cached, total)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := pageCachedDir(t)
			n := startNode(t, bin, dir, freeAddr(t), append([]string{"--segment-bytes", "4MiB"}, tt.flags...)...)
			for _, args := range [][]string{
				{"bench", "produce", "--mode", "stream", "--batch", "100", "--records", strconv.Itoa(records)},
				{"bench", "consume", "--records", strconv.Itoa(records), "--batch", "1000"},
			} {
				if _, stderr, code := n.cli(t, nil, args...); code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, stderr)
				}
			}
			stores, err := filepath.Glob(filepath.Join(dir, "log", "*.store"))
			if err != nil {
				t.Fatal(err)
			}
			var cached, total int64
			for _, path := range stores {
				pages, size, err := pagecache.Resident(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, resident := range pages {
					if resident {
						cached += pagecache.PageSize
					}
				}
				total += size
			}
			if total < records*100 || len(stores) < 4 {
				t.Fatalf("%d store bytes in %d segments; the test needs more", total, len(stores))
			}
			t.Logf("%d of %d store bytes cached, in %d segments", cached, total, len(stores))
			tt.check(t, cached, total)
		})
	}
}

// pageCachedDir is a temporary directory on a filesystem with a page cache
// of its own: t.TempDir, or, where that is a tmpfs (which ignores
// fadvise), one beside the test. Without one it skips, except in CI.
func pageCachedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if !isTmpfs(t, dir) {
		return dir
	}
	dir, err := os.MkdirTemp(".", "pagecache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if isTmpfs(t, dir) {
		if os.Getenv("CI") == "true" {
			t.Fatal("no filesystem with a page cache of its own to test on")
		}
		t.Skip("no filesystem with a page cache of its own to test on")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func isTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	tmpfs, err := pagecache.Tmpfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tmpfs
}
