package raftmux_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
	"github.com/proglog/proglog/raftmux"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a Mux on a mutual-TLS loopback listener. A connection starts
// with one byte, its raftmux.Kind (proglog's stream layer sends a
// preamble instead).
type node struct {
	addr string
	mux  *raftmux.Mux
	ln   net.Listener
	wg   sync.WaitGroup

	// delay, when above zero, holds each write on the node's connections
	// (both the ones it dialed and the ones it accepted) for a random time
	// below it, in nanoseconds.
	delay atomic.Int64

	mu     sync.Mutex // guards conns, refuse
	conns  map[net.Conn]struct{}
	refuse bool
	dials  int // KindRPC dials
}

func startNode(t testing.TB, ca *pkitest.CA, name string, cfg raftmux.Config) *node {
	t.Helper()
	certFile, keyFile := ca.Issue(t, name, true)
	srvCfg, err := pki.ServerTLSConfig(certFile, keyFile, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	srvCfg.ClientAuth = tls.RequireAndVerifyClientCert
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	dialCfg := ca.TLSConfig(t, certFile, keyFile)
	cfg.Addr = raft.ServerAddress(n.addr)
	cfg.Dial = func(addr raft.ServerAddress, kind raftmux.Kind, timeout time.Duration) (net.Conn, error) {
		n.mu.Lock()
		refuse := n.refuse
		if kind == raftmux.KindRPC {
			n.dials++
		}
		n.mu.Unlock()
		if refuse {
			return nil, errors.New("refused by the test")
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), dialCfg.Clone())
		if err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte{byte(kind)}); err != nil {
			c.Close()
			return nil, err
		}
		n.add(c)
		return &delayConn{Conn: c, n: n}, nil
	}
	n.mux, err = raftmux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.add(c)
			n.wg.Go(func() {
				defer n.remove(c)
				var kind [1]byte
				if _, err := io.ReadFull(c, kind[:]); err != nil {
					c.Close()
					return
				}
				n.mux.Serve(&delayConn{Conn: c, n: n}, raftmux.Kind(kind[0]))
			})
		}
	})
	t.Cleanup(func() { n.stop() })
	return n
}

// delayConn holds each write for a random time below its node's delay:
// traffic slowed unevenly (writes on one connection stay in order).
type delayConn struct {
	net.Conn
	n *node
}

func (c *delayConn) Write(p []byte) (int, error) {
	if d := c.n.delay.Load(); d > 0 {
		time.Sleep(time.Duration(rand.Int64N(d)))
	}
	return c.Conn.Write(p)
}

func (n *node) add(c net.Conn) {
	n.mu.Lock()
	n.conns[c] = struct{}{}
	n.mu.Unlock()
}

func (n *node) remove(c net.Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// cut closes every connection of the node, both ways.
func (n *node) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.conns {
		c.Close()
		delete(n.conns, c)
	}
}

func (n *node) rpcDials() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials
}

func (n *node) stop() {
	n.ln.Close()
	n.mux.Close()
	n.cut()
	n.wg.Wait()
}

// fsm keeps the applied entries; its snapshot also carries pad bytes, so a
// snapshot is big enough to stream.
type fsm struct {
	mu   sync.Mutex // guards data
	data [][]byte
	pad  int
}

func (f *fsm) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = append(f.data, bytes.Clone(l.Data))
	return nil
}

func (f *fsm) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.data)))
	for _, d := range f.data {
		b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
		b = append(b, d...)
	}
	b = append(b, make([]byte, f.pad)...)
	return snap(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	var data [][]byte
	for range n {
		l := binary.BigEndian.Uint32(b)
		data = append(data, bytes.Clone(b[4:4+l]))
		b = b[4+l:]
	}
	f.mu.Lock()
	f.data = data
	f.mu.Unlock()
	return nil
}

type snap []byte

func (s snap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (s snap) Release() {}

// replica is one node's member of a group.
type replica struct {
	raft  *raft.Raft
	trans *raftmux.Transport
	fsm   *fsm
}

func (r *replica) stop(t testing.TB) {
	t.Helper()
	if r.raft == nil {
		return
	}
	if err := r.raft.Shutdown().Error(); err != nil {
		t.Error(err)
	}
	r.trans.Close()
	r.raft = nil
}

type groupOpt func(*raft.Config, *fsm)

// startReplica starts group name on n, bootstrapped with voters.
func startReplica(t testing.TB, n *node, name string, voters []*node, opts ...groupOpt) *replica {
	t.Helper()
	trans, err := n.mux.Transport(name)
	if err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.addr)
	rc.HeartbeatTimeout = 300 * time.Millisecond
	rc.ElectionTimeout = 300 * time.Millisecond
	rc.LeaderLeaseTimeout = 150 * time.Millisecond
	rc.CommitTimeout = 20 * time.Millisecond
	rc.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: testWriter{t}})
	f := &fsm{}
	for _, o := range opts {
		o(rc, f)
	}
	// A file snapshot store: raft's in-memory one lets a snapshot being
	// sent read the buffer a new snapshot is being written to (a data race
	// the race detector reports).
	logs, stable := raft.NewInmemStore(), raft.NewInmemStore()
	snaps, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var conf raft.Configuration
	for _, v := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.addr), Address: raft.ServerAddress(v.addr)})
	}
	if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, f, logs, stable, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	trans.SetCommitIndex(r.CommitIndex)
	rep := &replica{raft: r, trans: trans, fsm: f}
	t.Cleanup(func() { rep.stop(t) })
	return rep
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimSpace(p))
	return len(p), nil
}

// startGroup starts group name on every node.
func startGroup(t testing.TB, name string, nodes []*node, opts ...groupOpt) []*replica {
	t.Helper()
	var reps []*replica
	for _, n := range nodes {
		reps = append(reps, startReplica(t, n, name, nodes, opts...))
	}
	return reps
}

// leader waits for one of reps to lead.
func leader(t testing.TB, reps []*replica) *replica {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range reps {
			if r.raft != nil && r.raft.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

// apply applies n entries through the group's leader, retrying through
// elections.
func apply(t testing.TB, reps []*replica, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; {
		l := leader(t, reps)
		if err := l.raft.Apply(fmt.Appendf(nil, "%s-%d", prefix, i), 5*time.Second).Error(); err != nil {
			t.Logf("apply %s-%d: %v (retrying)", prefix, i, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		i++
	}
}

// converge waits until every running replica applied at least n entries.
func converge(t testing.TB, reps []*replica, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, r := range reps {
			if r.raft != nil && r.fsm.count() < n {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var counts []int
			for _, r := range reps {
				counts = append(counts, r.fsm.count())
			}
			t.Fatalf("replicas did not converge on %d entries: %v", n, counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startNodes(t testing.TB, k int, cfg raftmux.Config) []*node {
	t.Helper()
	ca := pkitest.NewCA(t)
	var nodes []*node
	for i := range k {
		nodes = append(nodes, startNode(t, ca, fmt.Sprintf("n%d", i+1), cfg))
	}
	return nodes
}
