//go:build slow

package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/slowtest"
	"github.com/proglog/proglog/pki"
)

// netns is a bridge in the test's network namespace and one namespace per
// node, each joined to the bridge by a veth pair: nodes reach each other
// (and the test reaches them) at 10.213.<subnet>.<i>, and cutting a node's
// link inside its namespace partitions it from everyone.
type netns struct {
	t      *testing.T
	tag    string // unique per test process: names of links and namespaces
	subnet int
}

func (n *netns) ns(i int) string     { return fmt.Sprintf("pl%sn%d", n.tag, i) }
func (n *netns) inner(i int) string  { return fmt.Sprintf("pl%sp%d", n.tag, i) }
func (n *netns) outer(i int) string  { return fmt.Sprintf("pl%sv%d", n.tag, i) }
func (n *netns) bridge() string      { return "pl" + n.tag + "br" }
func (n *netns) ip(i int) string     { return fmt.Sprintf("10.213.%d.%d", n.subnet, i) }
func (n *netns) exec(i int) []string { return []string{"ip", "netns", "exec", n.ns(i)} }

func (n *netns) run(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (n *netns) must(args ...string) {
	n.t.Helper()
	if err := n.run(args...); err != nil {
		n.t.Fatal(err)
	}
}

// newNetns makes the bridge and nodes namespaces, or skips the test where
// the machine does not allow network namespaces (not root, no iproute2).
func newNetns(t *testing.T, nodes int) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		slowtest.Unavailable(t, "iproute2 (ip) is not installed")
	}
	pid := os.Getpid()
	n := &netns{t: t, tag: fmt.Sprint(pid % 100000), subnet: pid % 250}
	t.Cleanup(func() {
		for i := 1; i <= nodes; i++ {
			_ = n.run("link", "del", n.outer(i))
			_ = n.run("netns", "del", n.ns(i))
		}
		_ = n.run("link", "del", n.bridge())
	})
	// Any step failing here is the machine's limit (no CAP_NET_ADMIN, no
	// bridge or veth support), not proglog's: skip and say which.
	steps := [][]string{
		{"link", "add", n.bridge(), "type", "bridge"},
		{"addr", "add", n.ip(254) + "/24", "dev", n.bridge()},
		{"link", "set", n.bridge(), "up"},
	}
	for i := 1; i <= nodes; i++ {
		steps = append(steps,
			[]string{"netns", "add", n.ns(i)},
			[]string{"link", "add", n.outer(i), "type", "veth", "peer", "name", n.inner(i), "netns", n.ns(i)},
			[]string{"link", "set", n.outer(i), "master", n.bridge(), "up"},
			[]string{"-n", n.ns(i), "addr", "add", n.ip(i) + "/24", "dev", n.inner(i)},
			[]string{"-n", n.ns(i), "link", "set", n.inner(i), "up"},
			[]string{"-n", n.ns(i), "link", "set", "lo", "up"},
		)
	}
	for _, step := range steps {
		if err := n.run(step...); err != nil {
			slowtest.Unavailable(t, "network namespaces are not available here: %v", err)
		}
	}
	return n
}

// cut takes node i's link down inside its namespace (it then has no route
// at all) or brings it back.
func (n *netns) cut(i int, down bool) {
	n.t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	n.must("-n", n.ns(i), "link", "set", n.inner(i), state)
}

// netnsCluster is a cluster whose node i runs in namespace i of nn.
type netnsCluster struct {
	*testCluster
	// The client identity, for CLI commands run inside a namespace.
	caFile, rootCert, rootKey string
}

// startNetnsCluster runs nodes `proglog serve` processes, node i in
// namespace i of nn with a certificate of one CA for its namespace address
// (i from 1; node 1 bootstraps, the others join it), and waits for a leader.
// Every node gets the flags in extra. wrap, if not nil, gives the command
// line node i runs through before `ip netns exec` (e.g. to enter a mount
// namespace); it is called with the node's data dir, which does not exist
// yet, before the node first starts.
func startNetnsCluster(t *testing.T, nn *netns, nodes int, wrap func(i int, dataDir string) []string, extra ...string) *netnsCluster {
	t.Helper()
	bin := sharedBinary(t)
	root := t.TempDir()

	// One CA; each node's certificate covers its namespace address.
	ca, err := pki.NewCA("proglog netns test CA")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.CertPEM)
	cert, key, err := ca.IssueClient("root")
	if err != nil {
		t.Fatal(err)
	}
	rootCert, rootKey := write("root.pem", cert), write("root-key.pem", key)
	aclFile := write("acl.csv", []byte("p, root, *, *\n"))
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	gossipKey := base64.StdEncoding.EncodeToString(keyBytes)

	c := &testCluster{t: t, bin: bin, root: root, extra: extra, clients: map[string]logv1connect.LogServiceClient{}}
	c.connectAs(caFile, rootCert, rootKey)

	for i := 1; i <= nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		cert, key, err := ca.IssueServer(id, []string{nn.ip(i)})
		if err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(root, id)
		m := &member{t: t, bin: bin, id: id, addr: nn.ip(i) + ":8400", out: &lockedBuffer{}, wrap: nn.exec(i)}
		if wrap != nil {
			m.wrap = append(wrap(i, dataDir), m.wrap...)
		}
		m.args = []string{"--data-dir", dataDir, "--addr", m.addr, "--node-id", id,
			"--gossip-addr", nn.ip(i) + ":8401", "--gossip-key", gossipKey, "--raft-timeout", raftTimeout(t).String(),
			"--tls-cert", write(id+".pem", cert), "--tls-key", write(id+"-key.pem", key), "--tls-ca", caFile,
			"--acl", aclFile, "--log-format", "json"}
		if i == 1 {
			m.args = append(m.args, "--bootstrap")
		} else {
			m.args = append(m.args, "--join", nn.ip(1)+":8401")
		}
		m.args = append(m.args, extra...)
		c.track(m)
		m.start()
		c.waitReady(m)
	}
	c.waitLeader(nodes)
	return &netnsCluster{testCluster: c, caFile: caFile, rootCert: rootCert, rootKey: rootKey}
}

// TestClusterPartitionNetns runs three `proglog serve` processes, each in
// its own network namespace, and cuts the leader off from the others and
// from every client. The majority elects a new leader and keeps taking
// writes; a write sent to the cut-off leader (from inside its namespace) is
// not acknowledged and its node serves no record past the partition. Once
// the link is back, the old leader catches up: every node holds the same
// log, with every acknowledged record and without the unacknowledged one.
func TestClusterPartitionNetns(t *testing.T) {
	nodes := 3
	nn := newNetns(t, nodes)
	nc := startNetnsCluster(t, nn, nodes, nil)
	c, bin, caFile, rootCert, rootKey := nc.testCluster, nc.bin, nc.caFile, nc.rootCert, nc.rootKey
	leader := c.waitLeader(nodes)
	cutIdx := 0
	for i, m := range c.members {
		if m == leader {
			cutIdx = i + 1
		}
	}
	var others []*member
	for _, m := range c.members {
		if m != leader {
			others = append(others, m)
		}
	}

	var acked []string
	produce := func(via *member, value string) error {
		ctx, cancel := c.call(5 * time.Second)
		defer cancel()
		resp, err := c.client(via.addr).Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(value)}})
		if err == nil {
			if resp.GetOffset() != uint64(len(acked)) {
				return fmt.Errorf("%q acknowledged at offset %d, want %d", value, resp.GetOffset(), len(acked))
			}
			acked = append(acked, value)
		}
		return err
	}
	for i := range 10 {
		if err := produce(leader, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := uint64(len(acked))
	// Every follower has applied the records before the cut.
	c.waitConverged()

	nn.cut(cutIdx, true)
	cutAt := time.Now()
	// The cut-off leader cannot commit: a produce sent from inside its
	// namespace is not acknowledged.
	lost := "written-to-the-cut-off-leader"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	argv := append(nn.exec(cutIdx), "timeout", "5", bin, "produce",
		"--addr", leader.addr, "--ca", caFile, "--cert", rootCert, "--key", rootKey, lost)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	cancel()
	if err == nil {
		t.Fatalf("a produce to the cut-off leader was acknowledged: %s", out)
	}

	// The majority elects a new leader and takes writes (a follower
	// forwards them to it).
	var newLeader string
	waitFor(t, "a new leader among the majority", 30*time.Second, func() bool {
		for _, m := range others {
			for _, s := range c.servers(m.addr) {
				if s.GetIsLeader() && s.GetRpcAddr() != leader.addr {
					newLeader = s.GetRpcAddr()
					return true
				}
			}
		}
		return false
	})
	t.Logf("new leader %s %v after the cut", newLeader, time.Since(cutAt).Round(time.Millisecond))
	for i := range 10 {
		if err := produce(others[i%2], fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatalf("produce during the partition via %s: %v", others[i%2].id, err)
		}
	}

	// Inside its namespace, the cut-off node serves nothing past the cut.
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	argv = append(nn.exec(cutIdx), "timeout", "10", bin, "stats",
		"--addr", leader.addr, "--ca", caFile, "--cert", rootCert, "--key", rootKey)
	out, err = exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("stats on the cut-off node: %v: %s", err, out)
	}
	if want := fmt.Sprintf("next:     %d\n", before); !strings.Contains(string(out), want) {
		t.Fatalf("the cut-off node reports\n%s\nwant %q: it must serve only what was committed", out, want)
	}

	nn.cut(cutIdx, false)
	log := c.checkIdentical()
	if len(log) != len(acked) {
		t.Fatalf("after healing the log has %d records, want the %d acknowledged", len(log), len(acked))
	}
	for i, v := range acked {
		if string(log[i]) != v {
			t.Fatalf("offset %d holds %q, want %q", i, log[i], v)
		}
	}
}
