// Package pagecache tells which pages of a file the kernel's page cache
// holds, for tests of proglog's page-cache hints (logstore's drop behind,
// serve's --page-cache-tail).
package pagecache

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PageSize is the page cache's unit.
var PageSize = int64(os.Getpagesize())

// Resident reports page by page whether the file at path is in the page
// cache, and its size: mincore(2) on a read-only shared mapping, which
// faults nothing in.
func Resident(path string) (pages []bool, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if size = fi.Size(); size == 0 {
		return nil, 0, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, 0, fmt.Errorf("mmap %s: %w", path, err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+PageSize-1)/PageSize)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return nil, 0, fmt.Errorf("mincore %s: %w", path, errno)
	}
	pages = make([]bool, len(vec))
	for i, v := range vec {
		pages[i] = v&1 == 1
	}
	return pages, size, nil
}

// Tmpfs reports whether path is on a tmpfs, whose files live in the page
// cache for good: it ignores the hints, and every page stays resident.
func Tmpfs(path string) (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return false, err
	}
	return fs.Type == unix.TMPFS_MAGIC, nil
}
