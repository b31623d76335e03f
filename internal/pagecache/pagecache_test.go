package pagecache

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestResident: a file just read is all resident, and none of it once
// synced and dropped (posix_fadvise DONTNEED), except on a tmpfs, where
// it stays.
func TestResident(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const size = 64<<10 + 100 // a partial last page
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	pages, n, err := Resident(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || int64(len(pages)) != (size+PageSize-1)/PageSize || slices.Contains(pages, false) {
		t.Fatalf("after a read: size %d, pages %v; want %d bytes, all resident", n, pages, size)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	tmpfs, err := Tmpfs(path)
	if err != nil {
		t.Fatal(err)
	}
	if pages, _, err = Resident(path); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pages, !tmpfs) {
		t.Fatalf("after a drop (tmpfs %v): pages %v", tmpfs, pages)
	}
}

func TestResidentEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if pages, size, err := Resident(path); err != nil || size != 0 || len(pages) != 0 {
		t.Fatalf("Resident(empty) = %v, %d, %v", pages, size, err)
	}
}
