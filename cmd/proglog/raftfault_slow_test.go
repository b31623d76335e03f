//go:build slow

package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// TestRaftLogCorruptRefused flips a byte in a sealed segment of a stopped
// node's Raft log: the restart must refuse with its own exit code and a
// message that names the file and byte and says what to do, not panic
// inside hashicorp/raft. Then it follows the message's single-node advice
// (move raft/ aside, start again) and checks that every record is served.
func TestRaftLogCorruptRefused(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	seg := []string{"--segment-bytes", "4KiB"}
	n := startNode(t, bin, dir, addr, seg...)
	want := map[uint64]string{}
	for i := range 30 {
		v := fmt.Sprintf("record-%d-%s", i, strings.Repeat("x", 1500))
		out, errs, code := n.cli(t, nil, "produce", v)
		if code != 0 {
			t.Fatalf("produce: exit %d: %s", code, errs)
		}
		var off uint64
		if _, err := fmt.Sscan(out, &off); err != nil {
			t.Fatalf("produce printed %q", out)
		}
		want[off] = v
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d after SIGTERM", code)
	}

	segs, err := filepath.Glob(filepath.Join(dir, "raft", "log", "*.store"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("raft log segments %v, %v; want at least 3", segs, err)
	}
	slices.Sort(segs)
	sealed := segs[1] // the oldest holds Raft's first entries, this one records
	flipMiddle(t, sealed, 0x01)

	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"serve", "--data-dir", dir, "--addr", addr, "--log-format", "json"}, seg...)...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.WaitDelay = time.Minute
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("serve on a damaged raft log: %v, want an exit code\n%s", err, stderr.String())
	}
	out := stderr.String()
	if ee.ExitCode() != 4 {
		t.Fatalf("exit code %d, want 4 (damaged raft log)\n%s", ee.ExitCode(), out)
	}
	for _, bad := range []string{"panic:", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Fatalf("output has %q:\n%s", bad, out)
		}
	}
	var msg string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "proglog: ") {
			msg = line
		}
	}
	for _, w := range []string{"raft log is corrupt", sealed + " at byte ", "--node-id", "--join", "single node", ".broken"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error message lacks %q:\n%s", w, msg)
		}
	}

	// The single-node advice: move raft/ aside and start again.
	if err := os.Rename(filepath.Join(dir, "raft"), filepath.Join(dir, "raft.broken")); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, bin, dir, addr, seg...)
	got := n.readAll()
	for off, v := range want {
		if got[off] != v {
			t.Fatalf("after recovery offset %d holds %.20q, want %.20q (%d records)", off, got[off], v, len(got))
		}
	}
	if out, errs, code := n.cli(t, nil, "produce", "after"); code != 0 {
		t.Fatalf("produce after recovery: exit %d: %s %s", code, out, errs)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

// damagedFollower runs three nodes, writes 240 records in 60 batches,
// kills a follower with -9 and flips a byte in the middle of one of its
// sealed Raft log segments, which it returns.
func damagedFollower(t *testing.T, extra ...string) (c *testCluster, leader, f *member, sealed string) {
	t.Helper()
	c = startCluster(t, append([]string{"--segment-bytes", "4KiB"}, extra...)...)
	leader = c.waitLeader(3)
	cl := c.client(leader.addr)
	for i := range 60 {
		req := &logv1.ProduceBatchRequest{}
		for j := range 4 {
			req.Records = append(req.Records, &logv1.Record{Value: fmt.Appendf(nil, "r%d-%d-%s", i, j, strings.Repeat("v", 100))})
		}
		ctx, cancel := c.call(10 * time.Second)
		_, err := cl.ProduceBatch(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	c.waitConverged()
	for _, m := range c.members {
		// Each node notes the members it saw (for --recover-from-peers)
		// once a second.
		waitFor(t, m.id+" to note its peers", 10*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(c.root, m.id, "peers"))
			return err == nil && bytes.Count(b, []byte("\n")) == 4
		})
	}
	// A follower that joined (n1 bootstrapped the cluster: it has no
	// --join, which --recover-from-peers needs).
	for _, m := range c.followers(leader) {
		if m.id != "n1" {
			f = m
			break
		}
	}
	f.kill9() // still a voter: a crash, not a graceful leave

	dataDir := filepath.Join(c.root, f.id)
	segs, err := filepath.Glob(filepath.Join(dataDir, "raft", "log", "*.store"))
	if err != nil || len(segs) < 4 {
		t.Fatalf("raft log segments %v, %v; want at least 4", segs, err)
	}
	slices.Sort(segs)
	sealed = segs[len(segs)/2]
	flipMiddle(t, sealed, 0x10)

	return c, leader, f, sealed
}

// TestClusterRaftLogCorruptRecoveredUnderNewID damages a follower's Raft
// log while it is down: it refuses to start (exit 4, not a panic), and the
// procedure its message gives (move raft/, log/ and serf.snapshot aside,
// start with a new --node-id) brings it back as a new member that holds
// every record, with the old member gone from the configuration.
func TestClusterRaftLogCorruptRecoveredUnderNewID(t *testing.T) {
	c, leader, f, sealed := damagedFollower(t)
	dataDir := filepath.Join(c.root, f.id)
	f.start()
	select {
	case <-f.current.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit on a damaged raft log", f.id)
	}
	var ee *exec.ExitError
	if !errors.As(f.current.err, &ee) || ee.ExitCode() != 4 {
		t.Fatalf("%s on a damaged raft log: %v, want exit code 4", f.id, f.current.err)
	}
	out := f.out.String()
	if strings.Contains(out, "panic:") || !strings.Contains(out, sealed+" at byte ") || !strings.Contains(out, "NEW --node-id") {
		t.Fatalf("%s's refusal does not name %s or say what to do:\n%s", f.id, sealed, out[max(0, len(out)-3000):])
	}

	// The procedure the message gives.
	for _, name := range []string{"raft", "log", "serf.snapshot"} {
		p := filepath.Join(dataDir, name)
		if err := os.Rename(p, p+".broken"); err != nil {
			t.Fatal(err)
		}
	}
	oldID := f.id
	f.id += "b"
	i := slices.Index(f.args, "--node-id")
	f.args[i+1] = f.id
	f.start()
	c.waitReady(f)
	c.waitLeader(3)
	ids := map[string]bool{}
	for _, s := range c.servers(leader.addr) {
		ids[s.GetId()] = true
	}
	if ids[oldID] || !ids[f.id] {
		t.Fatalf("servers %v: want %s replaced by %s", ids, oldID, f.id)
	}
	log := c.checkIdentical()
	if len(log) != 240 || !strings.HasPrefix(string(log[239]), "r59-3-") {
		t.Fatalf("after recovery the log has %d records", len(log))
	}
}

// TestClusterRaftLogCorruptRecoveredFromPeers: the same damage, but every
// node runs with --recover-from-peers (an intact log starts as usual: the
// cluster starts and restarts with it on). The damaged follower moves its
// Raft state and records aside, has the leader remove its old membership,
// and rejoins under the same --node-id, holding every record; a restart
// afterwards changes nothing.
func TestClusterRaftLogCorruptRecoveredFromPeers(t *testing.T) {
	c, leader, f, sealed := damagedFollower(t, "--recover-from-peers")
	dataDir := filepath.Join(c.root, f.id)
	f.start()
	c.waitReady(f)
	c.waitLeader(3)
	out := f.out.String()
	if !strings.Contains(out, "--recover-from-peers: this node's Raft log is damaged") || !strings.Contains(out, "moved the damaged Raft state") {
		t.Fatalf("%s did not say it recovered:\n%s", f.id, out[max(0, len(out)-4000):])
	}
	if !strings.Contains(out, filepath.Base(sealed)) {
		t.Fatalf("%s's recovery does not name the damaged segment %s", f.id, sealed)
	}
	ids := map[string]bool{}
	for _, s := range c.servers(leader.addr) {
		ids[s.GetId()] = true
	}
	if len(ids) != 3 || !ids[f.id] {
		t.Fatalf("servers %v: want the three members, %s among them", ids, f.id)
	}
	log := c.checkIdentical()
	if len(log) != 240 || !strings.HasPrefix(string(log[239]), "r59-3-") {
		t.Fatalf("after recovery the log has %d records", len(log))
	}
	broken, err := filepath.Glob(filepath.Join(dataDir, "raft.broken-*"))
	if err != nil || len(broken) != 1 {
		t.Fatalf("the damaged Raft state kept aside: %v, %v; want one raft.broken-*", broken, err)
	}

	// The flag stays on: a restart with an intact log moves nothing.
	before, _ := filepath.Glob(filepath.Join(dataDir, "*.broken-*"))
	if code := f.stop(); code != 0 {
		t.Fatalf("%s exited with %d on SIGTERM", f.id, code)
	}
	f.start()
	c.waitReady(f)
	c.waitLeader(3)
	if after, _ := filepath.Glob(filepath.Join(dataDir, "*.broken-*")); !slices.Equal(after, before) {
		t.Fatalf("a restart with an intact log moved things aside: %v, before %v", after, before)
	}
	if got := c.checkIdentical(); len(got) != 240 {
		t.Fatalf("after the restart the log has %d records", len(got))
	}
}

// flipMiddle XORs the byte in the middle of the file at path with mask, as
// a rotten disk sector would, and returns its position.
func flipMiddle(t *testing.T, path string, mask byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := len(b) / 2
	b[at] ^= mask
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return at
}
