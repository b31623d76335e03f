//go:build slow

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/internal/slowtest"
)

const stableChildEnv = "PROGLOG_CLUSTER_STABLE_FULL_DIR"

// TestStableStoreOnFullDisk fills a size-capped tmpfs (a real ENOSPC, in a
// user and mount namespace) and checks that Raft's stable store still
// saves the term and vote: hashicorp/raft panics when it cannot.
func TestStableStoreOnFullDisk(t *testing.T) {
	slowtest.NeedUnshare(t)
	dir := t.TempDir()
	runOnTmpfs(t, dir, "1m", "TestStableStoreOnFullDiskChild", stableChildEnv+"="+dir)
}

// runOnTmpfs runs the test child of this binary in a user and mount
// namespace with a tmpfs of size mounted on dir, and checks that it passed.
func runOnTmpfs(t *testing.T, dir, size, child string, env ...string) {
	t.Helper()
	cmd := exec.Command("unshare", "-rm", "sh", "-c", `mount -t tmpfs -o size=`+size+` tmpfs "$1" && exec "$2" -test.run="^$3\$" -test.v`, "sh", dir, os.Args[0], child)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		if bytes.Contains(out, []byte("mount:")) {
			slowtest.Unavailable(t, "cannot mount tmpfs in a user namespace: %s", out)
		}
		t.Fatalf("child failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+child)) {
		t.Fatal("the child did not run")
	}
}

func TestStableStoreOnFullDiskChild(t *testing.T) {
	dir := os.Getenv(stableChildEnv)
	if dir == "" {
		t.Skip("run by TestStableStoreOnFullDisk")
	}
	if err := os.Mkdir(filepath.Join(dir, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := openRaftStore(filepath.Join(dir, "raft"), raftStoreConfig(1<<20, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err = filler.Write(chunk); err != nil {
			break
		}
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a new file on the full disk: %v, want ENOSPC", err)
	}
	for term := uint64(2); term < 200; term++ {
		if err := s.SetUint64([]byte("CurrentTerm"), term); err != nil {
			t.Fatalf("save term %d on a full disk: %v", term, err)
		}
		if err := s.Set([]byte("LastVoteCand"), fmt.Appendf(nil, "127.0.0.1:%d", term)); err != nil {
			t.Fatalf("save vote %d on a full disk: %v", term, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openRaftStore(filepath.Join(dir, "raft"), raftStoreConfig(1<<20, nil))
	if err != nil {
		t.Fatalf("reopen on the full disk: %v", err)
	}
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 199 {
		t.Fatalf("CurrentTerm after reopen = %d, %v; want 199", v, err)
	}
}

const (
	raftFullChildEnv  = "PROGLOG_CLUSTER_RAFT_FULL_DIR"
	raftFullFillerEnv = "PROGLOG_CLUSTER_RAFT_FULL_FILLER"
)

// TestRaftLogRecoversFromFullDisk fills a size-capped tmpfs with Raft
// entries until a write fails with ENOSPC, then frees space and checks
// that recover makes the log writable again with exactly the entries it
// stored, and that it reads them meanwhile.
func TestRaftLogRecoversFromFullDisk(t *testing.T) {
	slowtest.NeedUnshare(t)
	// Filler sizes that make different writes fail: a segment's creation,
	// a frame write in the middle of a segment.
	for _, filler := range []int{512 << 10, 512<<10 + 20<<10, 512<<10 + 45<<10 + 123} {
		t.Run(fmt.Sprint(filler), func(t *testing.T) {
			dir := t.TempDir()
			runOnTmpfs(t, dir, "2m", "TestRaftLogRecoversFromFullDiskChild",
				raftFullChildEnv+"="+dir, raftFullFillerEnv+"="+fmt.Sprint(filler))
		})
	}
}

func TestRaftLogRecoversFromFullDiskChild(t *testing.T) {
	dir := os.Getenv(raftFullChildEnv)
	if dir == "" {
		t.Skip("run by TestRaftLogRecoversFromFullDisk")
	}
	filler, err := strconv.Atoi(os.Getenv(raftFullFillerEnv))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "filler"), make([]byte, filler), 0o600); err != nil {
		t.Fatal(err)
	}
	raftDir := filepath.Join(dir, "raft")
	if err := os.Mkdir(raftDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := openRaftStore(raftDir, raftStoreConfig(64<<10, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	var sawENOSPC bool
	s.noSpace = func(err error) bool {
		sawENOSPC = errors.Is(err, syscall.ENOSPC)
		return sawENOSPC
	}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 3000)}
	}
	var last uint64
	for i := uint64(1); ; i += 3 {
		err = s.StoreLogs([]*raft.Log{entry(i), entry(i + 1), entry(i + 2)})
		if err != nil {
			break
		}
		last = i + 2
		if i > 10000 {
			t.Fatal("a 2 MiB disk never filled")
		}
	}
	if !errors.Is(err, ErrDiskFull) || !sawENOSPC {
		t.Fatalf("StoreLogs on a full disk = %v, want ErrDiskFull for ENOSPC", err)
	}
	t.Logf("full after %d entries: %v", last, err)
	if err := s.StoreLogs([]*raft.Log{entry(last + 1)}); err == nil {
		t.Fatal("the failed log took another entry")
	}
	var got raft.Log
	if err := s.GetLog(last, &got); err != nil || got.Index != last {
		t.Fatalf("read on a full disk: %v", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatalf("save the term on a full disk: %v", err)
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := s.recover(); err != nil {
		t.Fatalf("recover after freeing space: %v", err)
	}
	if l, err := s.LastIndex(); err != nil || l != last {
		t.Fatalf("LastIndex after recover = %d, %v; want %d (the failed write cut)", l, err, last)
	}
	if err := s.StoreLogs([]*raft.Log{entry(last + 1), entry(last + 2)}); err != nil {
		t.Fatalf("StoreLogs after recover: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openRaftStore(raftDir, raftStoreConfig(64<<10, nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= last+2; i++ {
		if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
			t.Fatalf("entry %d after reopen: %v", i, err)
		}
	}
}
