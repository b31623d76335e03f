package raftwal

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHolds: Holds reports whether the WAL holds entries of a directory's
// current incarnation, whether or not its log is open.
func TestHolds(t *testing.T) {
	h := newTestWAL(t, 2, 4096)
	full, empty := h.dirs[0], h.dirs[1]
	m := newModel()
	mustAppend(t, h.logs[0], m, []byte("a"), []byte("b"))
	emptied := filepath.Join(h.cfg.Root, "emptied")
	l, err := h.w.Open(emptied)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, newModel(), []byte("c"))
	if err := l.TruncateBefore(1); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			name string
			dir  string
			want bool
		}{
			{"with entries", full, true},
			{"opened, no entries", empty, false},
			{"emptied and closed", emptied, false},
			{"never opened", filepath.Join(h.cfg.Root, "never"), false},
			{"outside root", t.TempDir(), false},
		} {
			if got := h.w.Holds(tc.dir); got != tc.want {
				t.Errorf("%s: Holds(%s: %s) = %v, want %v", when, tc.name, tc.dir, got, tc.want)
			}
		}
	}
	check("open")
	if err := h.logs[0].Close(); err != nil {
		t.Fatal(err)
	}
	check("its log closed")
	if l, err := h.w.Open(full); err != nil {
		t.Fatal(err)
	} else {
		h.logs[0] = l
	}
	h.reopen()
	check("after a reopen")
	// The directory removed and created again is another incarnation.
	if err := h.logs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(full); err != nil {
		t.Fatal(err)
	}
	if _, err := Incarnation(full); err != nil {
		t.Fatal(err)
	}
	if h.w.Holds(full) {
		t.Errorf("Holds(%s) after it was removed and created again = true", full)
	}
	if h.logs[0], err = h.w.Open(full); err != nil {
		t.Fatal(err)
	}
}
