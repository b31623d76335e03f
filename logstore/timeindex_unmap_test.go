package logstore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestTruncateFromUnmapsDamagedTimeIndex (found through raftwal's
// Recover): TruncateFrom into a sealed segment maps its time index, and when
// the file fails its checks (as one sealed by a failed write can) the
// mapping is never unmapped, so the deleted file's blocks stay allocated
// and its filesystem cannot be unmounted ("target is busy"), which is how
// TestRecoverAfterDiskFull sometimes finds it.
func TestTruncateFromUnmapsDamagedTimeIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := logstore.Config{Sync: logstore.SyncAlways, MaxSegmentBytes: 4096, MaxRecordBytes: 1 << 20}
	l, err := logstore.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := l.Append(context.Background(), bytes.Repeat([]byte("v"), 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	indexes, err := filepath.Glob(filepath.Join(dir, "*.timeindex"))
	if err != nil || len(indexes) == 0 {
		t.Fatalf("no time index in %s: %v", dir, err)
	}
	// A bad CRC: the file is mapped, then refused.
	b, err := os.ReadFile(indexes[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(indexes[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err = logstore.Open(dir, cfg); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFrom(1); err != nil { // into the first segment
		l.Close()
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if maps := mapsUnder(t, dir); len(maps) > 0 {
		t.Fatalf("after Close the process still maps files of the log:\n%s", strings.Join(maps, "\n"))
	}
}

// mapsUnder lists the process's memory mappings of files under dir.
func mapsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("no /proc/self/maps: %v", err)
	}
	var found []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, dir+"/") {
			found = append(found, line)
		}
	}
	return found
}
