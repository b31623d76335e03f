package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestStoreRebuiltFromRaft damages the active segment of a stopped node's
// local store the ways a machine crash can (the store syncs it only every
// second: the Raft log is the durable copy) and checks that on restart the
// node rebuilds
// every committed record from its snapshot and Raft log, without
// duplicates.
func TestStoreRebuiltFromRaft(t *testing.T) {
	tests := []struct {
		name     string
		snapshot bool // take a snapshot after the first half
		damage   func(t *testing.T, active string)
	}{
		{"torn tail", false, func(t *testing.T, active string) { truncateBy(t, active, 100) }},
		{"tail lost past the snapshot", true, func(t *testing.T, active string) { truncateBy(t, active, 3000) }},
		{"damage inside the active segment", true, func(t *testing.T, active string) {
			b, err := os.ReadFile(active)
			if err != nil {
				t.Fatal(err)
			}
			b[40] ^= 0xff // inside the first frame; later frames stay valid
			if err := os.WriteFile(active, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t)
			dir := t.TempDir()
			n := p.startNode(t, "solo", dir, "", true)
			waitLeader(t, n)
			var want [][]byte
			for i := range 20 {
				vals := batch(fmt.Sprint("v", i), 5)
				want = append(want, vals...)
				if _, err := n.log.AppendBatch(t.Context(), vals); err != nil {
					t.Fatal(err)
				}
				if tt.snapshot && i == 9 {
					if err := n.log.Snapshot(); err != nil {
						t.Fatal(err)
					}
				}
			}
			addr := n.port.addr
			n.stop(t)
			tt.damage(t, activeStore(t, filepath.Join(dir, "log")))

			n = p.startNode(t, "solo", dir, addr, true)
			defer n.stop(t)
			waitLeader(t, n)
			waitApplied(t, uint64(len(want)), n)
			_, got := readAll(t, n.log)
			if !slices.EqualFunc(got, want, func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Fatalf("rebuilt store holds %d records, want %d", len(got), len(want))
			}
			off, err := n.log.Append(t.Context(), []byte("after"))
			if err != nil || off != uint64(len(want)) {
				t.Fatalf("append after rebuild: offset %d, %v; want %d", off, err, len(want))
			}
		})
	}
}

func activeStore(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stores []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".store") {
			stores = append(stores, e.Name())
		}
	}
	if len(stores) == 0 {
		t.Fatal("no store files")
	}
	slices.Sort(stores)
	return filepath.Join(dir, stores[len(stores)-1])
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(st.Size()-n, 32)); err != nil {
		t.Fatal(err)
	}
}
