//go:build slow

package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/pki"
)

// raftTimeout is the nodes' --raft-timeout: short, so failovers are quick.
// CLUSTER_TEST_RAFT_TIMEOUT overrides it, e.g. to time failovers with the
// production default (1s).
func raftTimeout(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("CLUSTER_TEST_RAFT_TIMEOUT")
	if v == "" {
		return 500 * time.Millisecond
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("CLUSTER_TEST_RAFT_TIMEOUT: %v", err)
	}
	return d
}

// sharedBin is proglog built once for every cluster test of this binary;
// TestMain (main_test.go) removes it.
var sharedBin struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// sharedBinaryDir must match the copy in main_test.go.
func sharedBinaryDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("proglog-test-bin-%d", os.Getpid()))
}

func sharedBinary(t *testing.T) string {
	t.Helper()
	sharedBin.once.Do(func() {
		dir := sharedBinaryDir()
		if sharedBin.err = os.MkdirAll(dir, 0o700); sharedBin.err != nil {
			return
		}
		sharedBin.path = filepath.Join(dir, "proglog")
		sharedBin.out, sharedBin.err = exec.Command("go", "build", "-o", sharedBin.path, ".").CombinedOutput()
	})
	if sharedBin.err != nil {
		t.Fatalf("go build: %v\n%s", sharedBin.err, sharedBin.out)
	}
	return sharedBin.path
}

// proc is one run of a member's process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the Wait result, once done is closed
}

// member is one `proglog serve` of a cluster, restartable with its flags.
type member struct {
	t       *testing.T
	bin     string
	id      string
	addr    string
	args    []string
	wrap    []string // runs the process through this command line (e.g. ip netns exec)
	out     *lockedBuffer
	current *proc
}

func (m *member) start() {
	m.t.Helper()
	argv := append(append(slices.Clone(m.wrap), m.bin, "serve"), m.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.current = p
}

func (m *member) running() bool {
	if m.current == nil {
		return false
	}
	select {
	case <-m.current.done:
		return false
	default:
		return true
	}
}

// kill9 kills the process as a crash would.
func (m *member) kill9() {
	m.t.Helper()
	if err := m.current.cmd.Process.Kill(); err != nil {
		m.t.Fatal(err)
	}
	<-m.current.done
	fmt.Fprintf(m.out, "\n--- killed with SIGKILL ---\n")
}

func (m *member) signal(sig syscall.Signal) {
	m.t.Helper()
	if err := m.current.cmd.Process.Signal(sig); err != nil {
		m.t.Fatal(err)
	}
}

// stop sends SIGTERM and returns the exit code.
func (m *member) stop() int {
	m.t.Helper()
	m.signal(syscall.SIGTERM)
	select {
	case <-m.current.done:
	case <-time.After(time.Minute):
		m.t.Fatalf("%s did not exit on SIGTERM", m.id)
	}
	var ee *exec.ExitError
	if errors.As(m.current.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

type testCluster struct {
	t       *testing.T
	bin     string
	root    string   // holds every member's data dir
	key     string   // the gossip key
	gossip  string   // node 1's gossip address, which the others join
	extra   []string // flags every member gets
	members []*member
	http    *http.Client
	mu      sync.Mutex // guards clients
	clients map[string]logv1connect.LogServiceClient
}

// startCluster runs three nodes on loopback: node 1 bootstraps with the
// quickstart identity, nodes 2 and 3 join it using its certificates and
// ACL, as the README shows. Every node also gets the flags in extra.
func startCluster(t *testing.T, extra ...string) *testCluster {
	t.Helper()
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	c := &testCluster{t: t, bin: sharedBinary(t), root: t.TempDir(), extra: extra,
		key: base64.StdEncoding.EncodeToString(keyBytes), clients: map[string]logv1connect.LogServiceClient{}}
	for range 3 {
		c.addMember()
	}
	c.waitLeader(3)
	return c
}

// track adds m to the cluster and, when the test ends, kills it if it
// still runs and, if the test failed, shows the end of its output
// (CLUSTER_TEST_LOG_DIR keeps all of it for a post-mortem).
func (c *testCluster) track(m *member) {
	t := c.t
	c.members = append(c.members, m)
	t.Cleanup(func() {
		if m.running() {
			m.current.cmd.Process.Kill()
			<-m.current.done
		}
		if !t.Failed() {
			return
		}
		out := m.out.String()
		t.Logf("%s output (last 6000 bytes):\n%s", m.id, out[max(0, len(out)-6000):])
		if dir := os.Getenv("CLUSTER_TEST_LOG_DIR"); dir != "" {
			name := filepath.Join(dir, fmt.Sprintf("%s-%s.log", filepath.Base(t.Name()), m.id))
			if err := os.WriteFile(name, []byte(out), 0o600); err != nil {
				t.Log(err)
			}
		}
	})
}

// addMember starts the next node: the first bootstraps, the others join it.
func (c *testCluster) addMember() *member {
	t := c.t
	t.Helper()
	i := len(c.members)
	id := fmt.Sprintf("n%d", i+1)
	certs := filepath.Join(c.root, "n1", "certs")
	m := &member{t: t, bin: c.bin, id: id, addr: freeAddr(t), out: &lockedBuffer{}}
	gossip := freeAddr(t)
	m.args = []string{"--data-dir", filepath.Join(c.root, id), "--addr", m.addr, "--node-id", id,
		"--gossip-addr", gossip, "--gossip-key", c.key, "--raft-timeout", raftTimeout(t).String(), "--log-format", "json"}
	if i == 0 {
		c.gossip = gossip
		m.args = append(m.args, "--bootstrap")
	} else {
		m.args = append(m.args, "--join", c.gossip,
			"--tls-cert", filepath.Join(certs, pki.DevServerFile), "--tls-key", filepath.Join(certs, pki.DevServerKeyFile),
			"--tls-ca", filepath.Join(certs, pki.DevCAFile), "--acl", filepath.Join(c.root, "n1", "acl.csv"))
	}
	m.args = append(m.args, c.extra...)
	c.track(m)
	m.start()
	if i == 0 {
		// Node 1 writes the identity every client and node uses.
		waitFor(t, "the quickstart identity", 20*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(c.root, "n1", "acl.csv"))
			return err == nil
		})
		c.connectAs(filepath.Join(certs, pki.DevCAFile), filepath.Join(certs, pki.DevClientFile), filepath.Join(certs, pki.DevClientKeyFile))
	}
	c.waitReady(m)
	return m
}

// connectAs makes the test's clients use HTTP/2 with a client certificate.
func (c *testCluster) connectAs(caFile, certFile, keyFile string) {
	c.t.Helper()
	tlsCfg, err := pki.ClientTLSConfig(caFile, certFile, keyFile)
	if err != nil {
		c.t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: tlsCfg, Protocols: &protocols}
	c.t.Cleanup(tr.CloseIdleConnections)
	c.http = &http.Client{Transport: tr}
}

func (c *testCluster) client(addr string) logv1connect.LogServiceClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[addr]; ok {
		return cl
	}
	cl := logv1connect.NewLogServiceClient(c.http, "https://"+addr, connect.WithGRPC())
	c.clients[addr] = cl
	return cl
}

// waitFor polls cond every 20ms until it holds or limit passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", limit, what)
}

func (c *testCluster) call(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.t.Context(), timeout)
}

// waitReady waits until m answers RPCs.
func (c *testCluster) waitReady(m *member) {
	c.t.Helper()
	waitFor(c.t, m.id+" to serve", 30*time.Second, func() bool {
		if !m.running() {
			c.t.Fatalf("%s exited: %v", m.id, m.current.err)
		}
		ctx, cancel := c.call(time.Second)
		defer cancel()
		_, err := c.client(m.addr).GetStats(ctx, &logv1.GetStatsRequest{})
		return err == nil
	})
}

// servers asks addr for GetServers; nil on error.
func (c *testCluster) servers(addr string) []*logv1.Server {
	ctx, cancel := c.call(2 * time.Second)
	defer cancel()
	resp, err := c.client(addr).GetServers(ctx, &logv1.GetServersRequest{})
	if err != nil {
		return nil
	}
	return resp.GetServers()
}

// waitLeader waits until every running member lists n servers and the same
// single leader, and returns the leader's member.
func (c *testCluster) waitLeader(n int) *member {
	c.t.Helper()
	var leader *member
	waitFor(c.t, fmt.Sprintf("%d servers with one agreed leader", n), 30*time.Second, func() bool {
		leaderAddr := ""
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			servers := c.servers(m.addr)
			if len(servers) != n {
				return false
			}
			leaders := 0
			for _, s := range servers {
				if s.GetIsLeader() {
					leaders++
					if leaderAddr != "" && leaderAddr != s.GetRpcAddr() {
						return false
					}
					leaderAddr = s.GetRpcAddr()
				}
			}
			if leaders != 1 {
				return false
			}
		}
		leader = c.byAddr(leaderAddr)
		return leader != nil && leader.running()
	})
	return leader
}

func (c *testCluster) byAddr(addr string) *member {
	for _, m := range c.members {
		if m.addr == addr {
			return m
		}
	}
	return nil
}

func (c *testCluster) followers(leader *member) []*member {
	var out []*member
	for _, m := range c.members {
		if m != leader {
			out = append(out, m)
		}
	}
	return out
}

// waitConverged waits until every running member has applied the same
// number of records of the default topic, and returns it.
func (c *testCluster) waitConverged() uint64 {
	c.t.Helper()
	return c.partitionNext("", 0)
}

// readLog reads records [0, next) of the default topic from addr.
func (c *testCluster) readLog(addr string, next uint64) [][]byte {
	c.t.Helper()
	return c.readPartition(addr, "", 0, next)
}

// checkIdentical reads every running member's log and compares them.
func (c *testCluster) checkIdentical() [][]byte {
	c.t.Helper()
	next := c.waitConverged()
	var want [][]byte
	var wantFrom string
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		got := c.readLog(m.addr, next)
		if want == nil {
			want, wantFrom = got, m.id
			continue
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				c.t.Fatalf("offset %d: %s has %q, %s has %q", i, m.id, got[i], wantFrom, want[i])
			}
		}
	}
	return want
}

func TestClusterReplicationThroughFollowers(t *testing.T) {
	c := startCluster(t)
	leader := c.waitLeader(3)
	followers := c.followers(leader)
	ctx := t.Context()

	// A follower's live tail, opened on the empty log, sees every
	// committed record as it arrives.
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	tail, err := c.client(followers[1].addr).ConsumeStream(tailCtx, &logv1.ConsumeStreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tailed := make(chan []byte, 64)
	var tailWG sync.WaitGroup
	tailWG.Go(func() {
		defer close(tailed)
		for tail.Receive() {
			tailed <- tail.Msg().GetRecord().GetValue()
		}
	})
	defer func() {
		stopTail()
		tailWG.Wait()
	}()

	via := c.client(followers[0].addr)
	var want []string
	for i := range 5 {
		v := fmt.Sprintf("unary-%d", i)
		resp, err := via.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(v)}})
		if err != nil || resp.GetOffset() != uint64(len(want)) {
			t.Fatalf("Produce via follower %s: %v, %v; want offset %d", followers[0].id, resp, err, len(want))
		}
		want = append(want, v)
	}
	batch := &logv1.ProduceBatchRequest{}
	for i := range 10 {
		batch.Records = append(batch.Records, &logv1.Record{Value: fmt.Appendf(nil, "batch-%d", i)})
	}
	b, err := c.client(followers[1].addr).ProduceBatch(ctx, batch)
	if err != nil || b.GetBaseOffset() != uint64(len(want)) || b.GetCount() != 10 {
		t.Fatalf("ProduceBatch via follower: %v, %v", b, err)
	}
	for _, r := range batch.Records {
		want = append(want, string(r.GetValue()))
	}
	ps, err := via.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		v := fmt.Sprintf("stream-%d", i)
		if err := ps.Send(&logv1.ProduceStreamRequest{Record: &logv1.Record{Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, v)
	}
	if err := ps.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ack, err := ps.Receive()
		if err != nil || ack.GetOffset() != uint64(15+i) {
			t.Fatalf("stream ack %d: %v, %v", i, ack, err)
		}
	}
	_ = ps.CloseResponse()

	for i, w := range want {
		select {
		case got := <-tailed:
			if string(got) != w {
				t.Fatalf("follower tail record %d: %q, want %q", i, got, w)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("follower tail stopped after %d records", i)
		}
	}
	log := c.checkIdentical()
	if len(log) != len(want) {
		t.Fatalf("%d records, want %d", len(log), len(want))
	}
	for i, w := range want {
		if string(log[i]) != w {
			t.Fatalf("offset %d: %q, want %q", i, log[i], w)
		}
	}
	for _, m := range c.members {
		servers := c.servers(m.addr)
		ids := map[string]bool{}
		for _, s := range servers {
			ids[s.GetId()] = true
			if c.byAddr(s.GetRpcAddr()) == nil {
				t.Fatalf("%s lists %s at unknown address %s", m.id, s.GetId(), s.GetRpcAddr())
			}
		}
		if len(ids) != 3 {
			t.Fatalf("%s lists %v", m.id, servers)
		}
	}

	// A graceful stop of the leader hands leadership over; the node stays
	// a voter (without --leave-on-terminate): the other two go on, still
	// listing three members.
	if code := leader.stop(); code != 0 {
		t.Fatalf("leader exited with %d on SIGTERM", code)
	}
	c.waitLeader(3)
	if _, err := via.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("after")}}); err != nil {
		t.Fatalf("produce after the leader left: %v", err)
	}
	if got := c.checkIdentical(); len(got) != len(want)+1 {
		t.Fatalf("%d records after the leader left, want %d", len(got), len(want)+1)
	}
}

// ack is one acknowledged produce.
type ack struct {
	offset         uint64
	value          string
	sent, received time.Time
}

// producer writes one record at a time, each attempt with a new value so
// duplicates would show, retrying on any error with the leader GetServers
// names.
type producer struct {
	c     *testCluster
	addrs []string
	mu    sync.Mutex // guards acks, sent and errs
	acks  []ack
	sent  map[string]bool // every value sent, acknowledged or not
	errs  int
	// seq and attempt are where run resumes: a producer paused (its ctx
	// ended) and run again sends new values, never one it sent before.
	// Only run touches them, and one run at a time.
	seq, attempt int
}

func (p *producer) run(ctx context.Context) {
	target := p.addrs[0]
	seq, attempt := p.seq, p.attempt
	defer func() { p.seq, p.attempt = seq, attempt }()
	for turn := 0; ctx.Err() == nil; turn++ {
		v := fmt.Sprintf("r%06d-a%d", seq, attempt)
		p.mu.Lock()
		p.sent[v] = true
		p.mu.Unlock()
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := p.c.client(target).Produce(cctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(v)}})
		cancel()
		if err == nil {
			p.mu.Lock()
			p.acks = append(p.acks, ack{offset: resp.GetOffset(), value: v, sent: start, received: time.Now()})
			p.mu.Unlock()
			seq, attempt = seq+1, 0
			continue
		}
		attempt++
		p.mu.Lock()
		p.errs++
		p.mu.Unlock()
		// Follow the leader as some node sees it; any node will do.
		target = p.addrs[turn%len(p.addrs)]
		for _, s := range p.c.servers(target) {
			if s.GetIsLeader() {
				target = s.GetRpcAddr()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *producer) acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// firstAckSentAfter returns the first acknowledged write sent after t0.
func (p *producer) firstAckSentAfter(t0 time.Time) (ack, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.acks {
		if a.sent.After(t0) {
			return a, true
		}
	}
	return ack{}, false
}

// verify checks the final log against what was acknowledged and sent.
func (p *producer) verify(t *testing.T, log [][]byte) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.acks {
		if a.offset >= uint64(len(log)) || string(log[a.offset]) != a.value {
			t.Fatalf("acknowledged %q at offset %d is missing (log has %d records)", a.value, a.offset, len(log))
		}
	}
	seen := map[string]bool{}
	for i, v := range log {
		if !p.sent[string(v)] {
			t.Fatalf("offset %d holds %q, which was never sent", i, v)
		}
		if seen[string(v)] {
			t.Fatalf("offset %d holds %q a second time", i, v)
		}
		seen[string(v)] = true
	}
	t.Logf("%d records acknowledged, %d in the log, %d failed attempts", len(p.acks), len(log), p.errs)
}

func startProducer(t *testing.T, c *testCluster) (*producer, func()) {
	p := &producer{c: c, sent: map[string]bool{}}
	for _, m := range c.members {
		p.addrs = append(p.addrs, m.addr)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.run(ctx) })
	stop := func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	return p, stop
}

// waitProgress waits until n more writes are acknowledged.
func (p *producer) waitProgress(t *testing.T, n int) {
	t.Helper()
	target := p.acked() + n
	waitFor(t, fmt.Sprintf("%d acknowledged writes", target), 30*time.Second, func() bool { return p.acked() >= target })
}

func TestClusterKillLeaderUnderLoad(t *testing.T) {
	c := startCluster(t)
	p, stop := startProducer(t, c)
	for round := range 3 {
		p.waitProgress(t, 50)
		leader := c.waitLeader(3)
		killed := time.Now()
		leader.kill9()
		var first ack
		waitFor(t, "a write acknowledged after the kill", 30*time.Second, func() bool {
			var ok bool
			first, ok = p.firstAckSentAfter(killed)
			return ok
		})
		t.Logf("round %d: killed leader %s; first write acknowledged %v later (sent %v after the kill)",
			round+1, leader.id, first.received.Sub(killed).Round(time.Millisecond), first.sent.Sub(killed).Round(time.Millisecond))
		p.waitProgress(t, 20)
		leader.start() // the same flags and data
		c.waitReady(leader)
	}
	p.waitProgress(t, 20)
	stop()
	c.waitLeader(3)
	p.verify(t, c.checkIdentical())
}

func TestClusterPausedLeaderCatchesUp(t *testing.T) {
	c := startCluster(t)
	p, stop := startProducer(t, c)
	p.waitProgress(t, 30)
	leader := c.waitLeader(3)
	leader.signal(syscall.SIGSTOP)
	paused := time.Now()
	// Well past the election timeout: the others elect a leader and go on.
	p.waitProgress(t, 50)
	if d := 4*raftTimeout(t) - time.Since(paused); d > 0 {
		time.Sleep(d)
	}
	leader.signal(syscall.SIGCONT)
	t.Logf("paused %s for %v", leader.id, time.Since(paused).Round(time.Millisecond))
	p.waitProgress(t, 30)
	stop()
	c.waitLeader(3)
	p.verify(t, c.checkIdentical())
}

// TestClusterRollingRestart restarts the three nodes one at a time with
// SIGTERM under a steady producer, as a Kubernetes StatefulSet update
// does: each stopped node stays a voter (the others list three members
// while it is down, so the quorum stays two of three), writes go on while
// it is down, and the next node is stopped only once `proglog health
// --service proglog.Ready` says the restarted one serves again. No
// acknowledged write is lost and every node ends with the same log.
func TestClusterRollingRestart(t *testing.T) {
	c := startCluster(t)
	p, stop := startProducer(t, c)
	dataDir := filepath.Join(c.root, "n1") // the development identity
	for _, m := range c.members {
		p.waitProgress(t, 30)
		if code := m.stop(); code != 0 {
			t.Fatalf("%s exited with %d on SIGTERM", m.id, code)
		}
		// Still three voters, one of them down; writes go on.
		c.waitLeader(3)
		p.waitProgress(t, 30)
		m.start()
		var last string
		t.Cleanup(func() {
			if t.Failed() && last != "" {
				t.Logf("%s's last health answer: %s", m.id, last)
			}
		})
		waitFor(t, m.id+" to be ready again", 60*time.Second, func() bool {
			out, errs, code := runCLI(t, c.bin, nil, "health", "--service", "proglog.Ready", "--addr", m.addr, "--data-dir", dataDir)
			last = fmt.Sprintf("exit %d: %s %s", code, out, errs)
			return code == 0 && strings.TrimSpace(out) == "SERVING"
		})
		// Liveness answers too, without a client certificate.
		out, errs, code := runCLI(t, c.bin, nil, "health", "--addr", m.addr, "--ca", filepath.Join(dataDir, "certs", pki.DevCAFile), "--data-dir", t.TempDir())
		if code != 0 || strings.TrimSpace(out) != "SERVING" {
			t.Fatalf("liveness of %s: exit %d, %q %q", m.id, code, out, errs)
		}
	}
	p.waitProgress(t, 30)
	stop()
	c.waitLeader(3)
	p.verify(t, c.checkIdentical())
}

// TestClusterNewNodeAfterCompaction runs three processes with small Raft
// snapshots and segments. Once the leader's Raft log is compacted past its
// first entries, a fourth node joins: it can only catch up through a
// snapshot (InstallSnapshot), and then serves the same log. Then it stops,
// stays a member until `proglog nodes remove` takes it out, and the others
// list three members again.
func TestClusterNewNodeAfterCompaction(t *testing.T) {
	c := startCluster(t, "--segment-bytes", "4KiB", "--raft-snapshot-threshold", "16",
		"--raft-snapshot-interval", "50ms", "--raft-trailing-logs", "4")
	leader := c.waitLeader(3)
	cl := c.client(leader.addr)
	const entries, perEntry = 120, 5
	for i := range entries {
		req := &logv1.ProduceBatchRequest{}
		for j := range perEntry {
			req.Records = append(req.Records, &logv1.Record{Value: fmt.Appendf(nil, "r%d-%d", i, j)})
		}
		ctx, cancel := c.call(10 * time.Second)
		_, err := cl.ProduceBatch(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	raftLog := filepath.Join(c.root, leader.id, "raft", "log")
	waitFor(t, "the leader's Raft log to be compacted", 30*time.Second, func() bool {
		return lowestSegment(t, raftLog) > 16
	})

	n4 := c.addMember()
	c.waitLeader(4)
	log := c.checkIdentical()
	if len(log) != entries*perEntry || string(log[0]) != "r0-0" || string(log[len(log)-1]) != fmt.Sprintf("r%d-%d", entries-1, perEntry-1) {
		t.Fatalf("the log has %d records, want %d from r0-0", len(log), entries*perEntry)
	}
	if !strings.Contains(n4.out.String(), "Installed remote snapshot") {
		t.Fatal("the new node caught up without installing a snapshot; the test needs it to")
	}

	// Stopped, it stays a member until an operator removes it with the
	// CLI (the same client flags as any command).
	if code := n4.stop(); code != 0 {
		t.Fatalf("n4 exited with %d on SIGTERM", code)
	}
	c.waitLeader(4)
	via := c.followers(c.waitLeader(4))[0].addr // a follower forwards it to the leader
	waitFor(t, "nodes remove n4 to succeed once gossip finds n4 failed", 30*time.Second, func() bool {
		out, errs, code := runCLI(t, c.bin, nil, "nodes", "remove", "n4", "--addr", via, "--data-dir", filepath.Join(c.root, "n1"))
		switch {
		case code == 0 && strings.Contains(out, "removed node n4"):
			return true
		case code == 1 && strings.Contains(errs, "failed_precondition"):
			return false // still alive in gossip
		}
		t.Fatalf("nodes remove n4: exit %d, %q %q", code, out, errs)
		return false
	})
	c.waitLeader(3)
	out, errs, code := runCLI(t, c.bin, nil, "nodes", "list", "--addr", via, "--data-dir", filepath.Join(c.root, "n1"))
	if code != 0 || strings.Contains(out, "n4") || strings.Count(out, "\n") != 4 {
		t.Fatalf("nodes list after the removal: exit %d, %q %q", code, out, errs)
	}
}

// lowestSegment returns the lowest segment base in a logstore directory.
func lowestSegment(t *testing.T, dir string) uint64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.store"))
	if err != nil || len(names) == 0 {
		return 0
	}
	lowest := uint64(math.MaxUint64)
	for _, n := range names {
		base, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), ".store"), 10, 64)
		if err != nil {
			t.Fatalf("segment file %s: %v", n, err)
		}
		lowest = min(lowest, base)
	}
	return lowest
}
