//go:build slow

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// needUnshare skips a test that needs an unprivileged user and mount
// namespace (unshare -rm) where there is none, except under CI=true, where
// it fails: CI must never pass without running it.
func needUnshare(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("unshare"); err != nil {
		why = "unshare not installed"
	} else if out, err := exec.Command("unshare", "-rm", "true").CombinedOutput(); err != nil {
		why = fmt.Sprintf("unshare -rm not permitted here: %v %s", err, out)
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and this test cannot run: %s", why)
	}
	t.Skip(why)
}

const stableChildEnv = "PROGLOG_CLUSTER_STABLE_FULL_DIR"

// TestStableStoreOnFullDisk fills a size-capped tmpfs (a real ENOSPC, in a
// user and mount namespace) and checks that Raft's stable store still
// saves the term and vote: hashicorp/raft panics when it cannot.
func TestStableStoreOnFullDisk(t *testing.T) {
	needUnshare(t)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "-rm", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -test.run='^TestStableStoreOnFullDiskChild$' -test.v`, "sh", dir, os.Args[0])
	cmd.Env = append(os.Environ(), stableChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		if bytes.Contains(out, []byte("mount:")) && os.Getenv("CI") != "true" {
			t.Skipf("cannot mount tmpfs in a user namespace: %s", out)
		}
		t.Fatalf("child failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestStableStoreOnFullDiskChild")) {
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
