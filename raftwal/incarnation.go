package raftwal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/proglog/proglog/internal/atomicfile"
)

// incarnationFile, in a log's directory, holds the directory's incarnation:
// 8 random bytes written when the directory first opens its log in the
// WAL. A directory removed and created again under the same name gets a
// new one, so the WAL's records of the removed one are not taken for its.
const incarnationFile = "wal-id"

// Incarnation returns dir's incarnation, creating it (durably) if dir has
// none.
func Incarnation(dir string) (uint64, error) {
	inc, err := readIncarnation(dir)
	if !errors.Is(err, os.ErrNotExist) {
		return inc, err
	}
	var b [8]byte
	rand.Read(b[:])
	inc = binary.LittleEndian.Uint64(b[:])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("raftwal: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, incarnationFile), b[:], 0o644, true); err != nil {
		return 0, fmt.Errorf("raftwal: write %s: %w", filepath.Join(dir, incarnationFile), err)
	}
	return inc, nil
}

func readIncarnation(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, incarnationFile))
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("raftwal: %s holds %d bytes, want 8: %w", filepath.Join(dir, incarnationFile), len(b), ErrCorrupt)
	}
	return binary.LittleEndian.Uint64(b), nil
}
