package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
)

// testPKI is a test CA that starts ports, nodes and clusters.
type testPKI struct{ *pkitest.CA }

func newTestPKI(t testing.TB) *testPKI { return &testPKI{pkitest.NewCA(t)} }

// port is one node's TLS port, arranged as in production: ALPN
// "proglog-raft" goes to the stream layer, h2 and http/1.1 to an http.Server.
type port struct {
	addr  string
	layer *cluster.StreamLayer
	srv   *http.Server
	done  chan error
}

func (p *testPKI) startPort(t testing.TB, name, addr string, logger *slog.Logger) *port {
	t.Helper()
	certFile, keyFile := p.Issue(t, name, true)
	tlsCfg, err := pki.ServerTLSConfig(certFile, keyFile, p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.NextProtos = append(tlsCfg.NextProtos, cluster.ALPN)
	ln := clustertest.Listen(t, addr)
	pt := &port{addr: ln.Addr().String(), done: make(chan error, 1)}
	pt.layer, err = cluster.NewStreamLayer(pt.addr, p.TLSConfig(t, certFile, keyFile), logger)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Proto) })
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	pt.srv = &http.Server{Handler: mux, TLSConfig: tlsCfg, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	pt.layer.Register(pt.srv)
	pt.srv.RegisterOnShutdown(func() { pt.layer.Close() })
	go func() { pt.done <- pt.srv.ServeTLS(ln, "", "") }()
	return pt
}

func (pt *port) stop(t testing.TB) {
	t.Helper()
	pt.layer.Close()
	pt.srv.Close()
	if err := <-pt.done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
}

// node is one cluster member on its own port.
type node struct {
	id, dir string
	port    *port
	log     *cluster.Log
}

type nodeOpt func(*cluster.Config)

// startNode starts (or restarts, with the same dir and addr) a node.
func (p *testPKI) startNode(t testing.TB, id, dir, addr string, bootstrap bool, opts ...nodeOpt) *node {
	t.Helper()
	logger := clustertest.Logger(t).With("node", id)
	pt := p.startPort(t, id, addr, logger)
	cfg := cluster.Config{
		NodeID:    id,
		DataDir:   dir,
		Bootstrap: bootstrap,
		Stream:    pt.layer,
		Logger:    logger,
	}
	testTimings(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	l, err := cluster.New(cfg)
	if err != nil {
		pt.stop(t)
		t.Fatal(err)
	}
	return &node{id: id, dir: dir, port: pt, log: l}
}

// testTimings are Raft's timeouts for nodes on loopback.
func testTimings(c *cluster.Config) {
	c.HeartbeatTimeout = testHeartbeatTimeout
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
}

// testHeartbeatTimeout is the test nodes' raft HeartbeatTimeout.
const testHeartbeatTimeout = 500 * time.Millisecond

func (n *node) stop(t testing.TB) {
	t.Helper()
	if n.log == nil {
		return
	}
	if err := n.log.Close(); err != nil {
		t.Errorf("close %s: %v", n.id, err)
	}
	n.port.stop(t)
	n.log = nil
}

// startCluster starts n nodes; the first bootstraps and adds the others.
func (p *testPKI) startCluster(t testing.TB, n int, opts ...nodeOpt) []*node {
	t.Helper()
	var nodes []*node
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop(t)
		}
	})
	for i := range n {
		nd := p.startNode(t, fmt.Sprintf("n%d", i+1), t.TempDir(), "", i == 0, opts...)
		nodes = append(nodes, nd)
		if i == 0 {
			waitLeader(t, nd)
			continue
		}
		join(t, nodes[:i], nd)
	}
	return nodes
}

// followerOf returns the first of nodes that is not leader.
func followerOf(nodes []*node, leader *node) *node {
	for _, n := range nodes {
		if n != leader {
			return n
		}
	}
	return nil
}

// waitApplied waits until every node's store reaches next.
func waitApplied(t testing.TB, next uint64, nodes ...*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if next == 0 {
			continue
		}
		if err := n.log.Wait(ctx, next-1); err != nil {
			t.Fatalf("%s: wait for offset %d: %v (bounds %v)", n.id, next-1, err, fmt.Sprint(n.log.Bounds()))
		}
	}
}

// readAll returns the values of [lowest, next) of a node's store.
func readAll(t testing.TB, l interface {
	Bounds() (uint64, uint64)
	ReadBatch(context.Context, uint64, int, int, []logstore.Record) ([]logstore.Record, error)
}) (uint64, [][]byte) {
	t.Helper()
	lowest, next := l.Bounds()
	var out [][]byte
	for off := lowest; off < next; {
		recs, err := l.ReadBatch(context.Background(), off, 1000, 0, nil)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		for _, r := range recs {
			if r.Offset != off {
				t.Fatalf("record at %d has offset %d", off, r.Offset)
			}
			out = append(out, r.Value)
			off++
		}
	}
	return lowest, out
}

// sameLogs checks that every node holds the same values at the same offsets.
func sameLogs(t testing.TB, nodes ...*node) [][]byte {
	t.Helper()
	lowest0, want := readAll(t, nodes[0].log)
	if lowest0 != 0 {
		t.Fatalf("%s: lowest %d, want 0", nodes[0].id, lowest0)
	}
	for _, n := range nodes[1:] {
		lowest, got := readAll(t, n.log)
		if lowest != 0 || !slices.EqualFunc(got, want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Fatalf("%s holds %d records from %d, %s holds %d from 0; they differ", n.id, len(got), lowest, nodes[0].id, len(want))
		}
	}
	return want
}

func batch(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%d", prefix, i)
	}
	return out
}

// appendTo appends through whichever node leads, retrying while leadership
// moves (nothing was written when a node says it is not the leader).
func appendTo(t testing.TB, nodes []*node, values [][]byte) uint64 {
	t.Helper()
	for range 200 {
		leader := waitLeader(t, nodes...)
		base, err := leader.log.AppendBatch(t.Context(), values)
		if err == nil {
			return base
		}
		if !errors.Is(err, cluster.ErrNotLeader) {
			t.Fatalf("append on %s: %v", leader.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader accepted the append")
	return 0
}

// join adds nd through whichever of nodes leads.
func join(t testing.TB, nodes []*node, nd *node) {
	t.Helper()
	clustertest.Join(t, logsOf(nodes), nd.id, nd.port.addr)
}

// waitLeader returns the node that leads.
func waitLeader(t testing.TB, nodes ...*node) *node {
	t.Helper()
	return nodes[clustertest.WaitLeader(t, logsOf(nodes)...)]
}

// logsOf lists the nodes' logs (nil for a stopped node).
func logsOf(nodes []*node) []*cluster.Log {
	logs := make([]*cluster.Log, len(nodes))
	for i, n := range nodes {
		logs[i] = n.log
	}
	return logs
}
