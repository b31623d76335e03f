package raftwal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestIncarnation: a directory's incarnation is created once and then
// read back; another directory, or the same one removed and created
// again, gets another.
func TestIncarnation(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "nested", "b")
	first := mustIncarnation(t, a)
	for _, tc := range []struct {
		name string
		dir  string
		same bool
	}{
		{"same dir again", a, true},
		{"another dir (created)", b, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustIncarnation(t, tc.dir); (got == first) != tc.same {
				t.Fatalf("Incarnation(%s) = %#x, Incarnation(%s) = %#x; same = %v, want %v", tc.dir, got, a, first, got == first, tc.same)
			}
		})
	}
	t.Run("dir removed and created again", func(t *testing.T) {
		if err := os.RemoveAll(a); err != nil {
			t.Fatal(err)
		}
		if got := mustIncarnation(t, a); got == first {
			t.Fatalf("Incarnation of the recreated %s = %#x, the removed one's", a, got)
		}
	})
}

func mustIncarnation(t *testing.T, dir string) uint64 {
	t.Helper()
	inc, err := Incarnation(dir)
	if err != nil {
		t.Fatalf("Incarnation(%s): %v", dir, err)
	}
	return inc
}

// TestIncarnationDamaged: a file of the wrong length is an error wrapping
// ErrCorrupt (and is not replaced), for Incarnation and for WAL.Open.
func TestIncarnationDamaged(t *testing.T) {
	h := newTestWAL(t, 0, 4096)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"7 bytes", make([]byte, 7)},
		{"9 bytes", make([]byte, 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(h.cfg.Root, tc.name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, incarnationFile)
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if inc, err := Incarnation(dir); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Incarnation = %#x, %v; want an error wrapping ErrCorrupt", inc, err)
			}
			if l, err := h.w.Open(dir); err == nil {
				l.Close()
				t.Fatal("Open of a directory with a damaged incarnation file succeeded")
			}
			if got, err := os.ReadFile(path); err != nil || len(got) != len(tc.data) {
				t.Fatalf("the damaged file was replaced: %d bytes, %v", len(got), err)
			}
		})
	}
}
