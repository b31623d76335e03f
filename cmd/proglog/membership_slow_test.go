//go:build slow

package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/pki"
)

// serverIDs lists the IDs GetServers on addr answers, sorted; nil on error.
func (c *testCluster) serverIDs(addr string) []string {
	var ids []string
	for _, s := range c.servers(addr) {
		ids = append(ids, s.GetId())
	}
	slices.Sort(ids)
	return ids
}

// produce writes n records through m and fails the test on an error.
func (c *testCluster) produce(m *member, what string, n int) {
	c.t.Helper()
	for i := range n {
		ctx, cancel := c.call(10 * time.Second)
		_, err := c.client(m.addr).Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: fmt.Appendf(nil, "%s-%d", what, i)}})
		cancel()
		if err != nil {
			c.t.Fatalf("produce %s-%d through %s: %v", what, i, m.id, err)
		}
	}
}

// metric reads a counter or gauge from m's /metrics; -1 when absent.
func (c *testCluster) metric(m *member, name string) float64 {
	c.t.Helper()
	resp, err := c.http.Get("https://" + m.addr + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				c.t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	io.Copy(io.Discard, resp.Body)
	return -1
}

// TestClusterRefusesForeignCertificate starts a fourth node that holds
// the gossip key but a certificate of another CA: the leader refuses to
// make it a voter, says why, keeps refusing on every reconcile, and the
// cluster keeps its three voters and takes writes.
func TestClusterRefusesForeignCertificate(t *testing.T) {
	c := startCluster(t)
	leader := c.waitLeader(3)

	foreign, err := pki.NewCA("foreign CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := foreign.IssueServer("n7", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"foreign.pem": certPEM, "foreign-key.pem": keyPEM, "foreign-ca.pem": foreign.CertPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n7 := &member{t: t, bin: c.bin, id: "n7", addr: freeAddr(t), out: &lockedBuffer{}}
	n7.args = []string{"--data-dir", filepath.Join(c.root, "n7"), "--addr", n7.addr, "--node-id", "n7",
		"--gossip-addr", freeAddr(t), "--gossip-key", c.key, "--join", c.gossip, "--raft-timeout", raftTimeout(t).String(),
		"--log-format", "json", "--acl", filepath.Join(c.root, "n1", "acl.csv"),
		"--tls-cert", filepath.Join(dir, "foreign.pem"), "--tls-key", filepath.Join(dir, "foreign-key.pem"),
		"--tls-ca", filepath.Join(dir, "foreign-ca.pem")}
	c.track(n7)
	n7.start()

	refusal := func() bool {
		for line := range strings.Lines(leader.out.String()) {
			if strings.Contains(line, "refused to add a member") && strings.Contains(line, `"member":"n7"`) {
				return strings.Contains(line, "certificate not issued by the cluster's CA")
			}
		}
		return false
	}
	threeVoters := func() {
		t.Helper()
		if got := c.serverIDs(leader.addr); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("the leader lists servers %v, want n1, n2, n3: n7 with a foreign certificate became a voter", got)
		}
	}
	waitFor(t, "the leader to refuse n7, saying why", 30*time.Second, func() bool {
		if !n7.running() {
			t.Fatalf("n7 exited: %v", n7.current.err)
		}
		threeVoters()
		return refusal()
	})
	// A reconcile (every 10s) checks it again and refuses again.
	waitFor(t, "a second refusal", 30*time.Second, func() bool {
		threeVoters()
		return c.metric(leader, "proglog_membership_joins_refused_total") >= 2
	})
	c.produce(leader, "after-n7", 20)
	for _, m := range c.members[:3] {
		if got := c.serverIDs(m.addr); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("%s lists servers %v, want n1, n2, n3", m.id, got)
		}
	}
	if n := strings.Count(leader.out.String(), "refused to add a member"); n != 1 {
		t.Fatalf("the refusal was logged %d times, want once", n)
	}
	n7.kill9() // the test's client cannot read from it
	c.checkIdentical()
}

// TestClusterReapsFailedMember kills a follower with SIGKILL: once it has
// been failed for --reap-failed-after it is removed from the Raft
// configuration, and the cluster takes writes; restarted, it rejoins.
func TestClusterReapsFailedMember(t *testing.T) {
	c := startCluster(t, "--reap-failed-after", "2s")
	leader := c.waitLeader(3)
	victim := c.followers(leader)[0]
	victim.kill9()
	var survivors []string
	for _, m := range c.members {
		if m != victim {
			survivors = append(survivors, m.id)
		}
	}
	waitFor(t, victim.id+" to be removed from the Raft configuration", 60*time.Second, func() bool {
		for _, m := range c.members {
			if m.running() && !slices.Equal(c.serverIDs(m.addr), survivors) {
				return false
			}
		}
		return true
	})
	// The configuration changes a moment before RemoveServer returns to the
	// reaper, which logs only then.
	waitFor(t, "the leader to log the removal", 10*time.Second, func() bool {
		return strings.Contains(leader.out.String(), "removed a failed member")
	})
	c.produce(leader, "two-voters", 10)

	victim.start()
	c.waitReady(victim)
	c.waitLeader(3)
	c.produce(leader, "three-again", 10)
	c.checkIdentical()
}

// TestClusterKeepsFailedMembersWithoutQuorum kills both followers of a
// three-node cluster: removing either would leave two voters of which one
// is alive, so neither is removed (the last node also lost its quorum, so
// it cannot lead); started again, they form the cluster again.
func TestClusterKeepsFailedMembersWithoutQuorum(t *testing.T) {
	c := startCluster(t, "--reap-failed-after", "1s")
	leader := c.waitLeader(3)
	followers := c.followers(leader)
	for _, f := range followers {
		f.kill9()
	}
	failed := func(id string) bool {
		return strings.Contains(leader.out.String(), "EventMemberFailed: "+id+" ")
	}
	waitFor(t, "gossip to see both followers failed", 60*time.Second, func() bool {
		return failed(followers[0].id) && failed(followers[1].id)
	})
	time.Sleep(3 * time.Second) // three times --reap-failed-after
	if got := c.serverIDs(leader.addr); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("%s lists servers %v: a failed member was removed without a quorum", leader.id, got)
	}
	for _, f := range followers {
		f.start()
	}
	c.waitLeader(3)
	c.produce(leader, "recovered", 10)
}
