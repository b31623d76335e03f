package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/client"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
	"github.com/proglog/proglog/service"
)

// testCA issues the certificates of a test cluster and its clients, and
// starts the cluster.
type testCA struct{ *pkitest.CA }

func newTestCA(t testing.TB) *testCA { return &testCA{pkitest.NewCA(t)} }

// clientTLS is the TLS config of a user with a client certificate.
func (p *testCA) clientTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	certFile, keyFile := p.Issue(t, name, false)
	return p.TLSConfig(t, certFile, keyFile)
}

// testPolicy lets root do everything; "writer" may only produce.
const testPolicy = "p, root, *, *\np, writer, log, produce\n"

// node is one cluster member with its Service on its own TLS port, wired as
// proglog serve wires it.
type node struct {
	id, dir, addr string
	log           *cluster.Log
	layer         *cluster.StreamLayer
	srv           *service.Server
	fwd           *service.Forwarder
	served        chan error
	calls         *calls
}

// calls counts the requests a node received, by URL path.
type calls struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

func (c *calls) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// count returns how many calls of the procedure (e.g. "Produce") arrived.
func (c *calls) count(procedure string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n["/log.v1.LogService/"+procedure]
}

// startNode starts a node; dir and addr may be those of a stopped node.
func (p *testCA) startNode(t testing.TB, id, dir, addr string, bootstrap bool) *node {
	t.Helper()
	logger := clustertest.Logger(t).With("node", id)
	certFile, keyFile := p.Issue(t, id, true)
	tlsCfg, err := pki.ServerTLSConfig(certFile, keyFile, p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.NextProtos = append(tlsCfg.NextProtos, cluster.ALPN)
	dial := p.TLSConfig(t, certFile, keyFile)

	ln := clustertest.Listen(t, addr)
	n := &node{id: id, dir: dir, addr: ln.Addr().String(), served: make(chan error, 1), calls: &calls{n: map[string]int{}}}
	layer, err := cluster.NewStreamLayer(n.addr, dial, logger)
	n.layer = layer
	if err != nil {
		t.Fatal(err)
	}
	n.log, err = cluster.New(cluster.Config{
		NodeID:             id,
		DataDir:            dir,
		Bootstrap:          bootstrap,
		Stream:             layer,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		Logger:             logger,
	})
	if err != nil {
		ln.Close()
		layer.Close()
		t.Fatal(err)
	}
	if n.fwd, err = service.NewForwarder(id, n.addr, dial); err != nil {
		t.Fatal(err)
	}
	policy, err := acl.Parse(strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{
		Log:        n.log,
		Authorizer: policy,
		NodeID:     id,
		Version:    "test",
		RPCAddr:    n.addr,
		Nodes:      nodesOf(n.log),
		Forward:    n.fwd.Forward,
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = service.NewServer(service.ServerConfig{
		Handler:    n.calls.wrap(svc.Handler()),
		TLS:        tlsCfg,
		Logger:     logger,
		Handoffs:   map[string]func(*tls.Conn){cluster.ALPN: layer.Handoff},
		OnShutdown: func() { layer.Close() },
	})
	go func() { n.served <- n.srv.Serve(ln) }()
	return n
}

// nodesOf adapts cluster.Log.Servers to service.Config.Nodes.
func nodesOf(l *cluster.Log) func() ([]service.Node, error) {
	return func() ([]service.Node, error) {
		servers, err := l.Servers()
		if err != nil {
			return nil, err
		}
		nodes := make([]service.Node, len(servers))
		for i, s := range servers {
			nodes[i] = service.Node{ID: s.ID, RPCAddr: s.RPCAddr, IsLeader: s.IsLeader}
		}
		return nodes, nil
	}
}

// stop shuts the node down like a crash of its process would for clients:
// its port closes, then its Raft stops without handing leadership over.
func (n *node) stop(t testing.TB) {
	t.Helper()
	if n.log == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown %s: %v", n.id, err)
	}
	if err := <-n.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve %s: %v", n.id, err)
	}
	if err := n.log.Close(); err != nil {
		t.Errorf("close %s: %v", n.id, err)
	}
	n.fwd.Close()
	n.log = nil
}

// startCluster starts n nodes; the first bootstraps and adds the others.
func (p *testCA) startCluster(t testing.TB, n int) []*node {
	t.Helper()
	var nodes []*node
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop(t)
		}
	})
	for i := range n {
		nd := p.startNode(t, fmt.Sprintf("n%d", i+1), t.TempDir(), "", i == 0)
		nodes = append(nodes, nd)
		if i == 0 {
			waitLeader(t, nd)
			continue
		}
		join(t, nodes, nd)
	}
	// Every node knows the leader before the test starts.
	for _, nd := range nodes {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err := nd.log.WaitForLeader(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", nd.id, err)
		}
	}
	return nodes
}

// newClient makes a client of the cluster for the subject name.
func (p *testCA) newClient(t testing.TB, name string, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = p.clientTLS(t, name)
	}
	if cfg.Logger == nil {
		cfg.Logger = clustertest.Logger(t).With("client", name)
	}
	if cfg.Backoff == (client.Backoff{}) {
		cfg.Backoff = client.Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if cfg.Retries == 0 {
		cfg.Retries = 100 // with 200ms backoff: about 20s, beyond any election here
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := client.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrs(nodes ...*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.addr)
	}
	return out
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln := clustertest.Listen(t, "")
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// join adds nd through whichever of nodes leads.
func join(t testing.TB, nodes []*node, nd *node) {
	t.Helper()
	clustertest.Join(t, logsOf(nodes), nd.id, nd.addr)
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
