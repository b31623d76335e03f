package cluster_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/logstore"
)

// TestRaftLogCorruptRefused damages a stopped node's own Raft log and
// checks that restarting it fails with a *RaftLogCorruptError naming the
// file and byte, instead of hashicorp/raft panicking inside NewRaft.
func TestRaftLogCorruptRefused(t *testing.T) {
	tests := []struct {
		name   string
		sealed bool // damage the oldest (sealed) segment, else the active one
	}{
		{"sealed segment", true},
		{"middle of the active segment", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t)
			dir := t.TempDir()
			small := func(c *cluster.Config) { c.Store.MaxSegmentBytes = 1024 }
			n := p.startNode(t, "n1", dir, "", true, small)
			waitLeader(t, n)
			for i := range 40 {
				appendTo(t, []*node{n}, batch(string(rune('a'+i%26)), 3))
			}
			n.stop(t)

			segs, err := filepath.Glob(filepath.Join(dir, "raft", "log", "*.store"))
			if err != nil || len(segs) < 3 {
				t.Fatalf("raft log segments %v, %v; want at least 3", segs, err)
			}
			slices.Sort(segs)
			file := segs[len(segs)-1]
			if tt.sealed {
				file = segs[0]
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			pos := len(b) / 2
			b[pos] ^= 0x40
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}

			pt := p.startPort(t, "n1", "", clustertest.Logger(t))
			defer pt.stop(t)
			l, err := cluster.New(cluster.Config{NodeID: "n1", DataDir: dir, Bootstrap: true, Stream: pt.layer,
				Store: logstore.Config{MaxSegmentBytes: 1024}, Logger: clustertest.Logger(t)})
			if err == nil {
				l.Close()
				t.Fatal("New succeeded on a damaged raft log")
			}
			var ce *cluster.RaftLogCorruptError
			if !errors.Is(err, cluster.ErrRaftLogCorrupt) || !errors.As(err, &ce) || !errors.Is(err, logstore.ErrCorrupt) {
				t.Fatalf("New = %v, want a *RaftLogCorruptError (ErrRaftLogCorrupt, logstore.ErrCorrupt)", err)
			}
			if ce.Path != file || ce.Pos > int64(pos) || ce.Pos < int64(pos)-2048 {
				t.Fatalf("error names %s at byte %d; the damage is in %s at byte %d", ce.Path, ce.Pos, file, pos)
			}
			t.Logf("New: %v", err)
			// The refusal changed nothing: the store still holds every
			// record (a single node recovers them by adopting it).
			store, err := logstore.Open(filepath.Join(dir, "log"), logstore.Config{MaxSegmentBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if lowest, next := store.Bounds(); lowest != 0 || next != 120 {
				t.Fatalf("after the refusal the store holds [%d, %d), want [0, 120)", lowest, next)
			}
		})
	}
}
