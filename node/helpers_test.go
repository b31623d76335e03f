package node_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	"github.com/proglog/proglog/cluster/clustertest"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/pki/pkitest"
)

// identity is a test CA's node certificate and a "root" client of it, and
// an ACL that lets root do everything.
type identity struct {
	ca        *pkitest.CA
	cert, key string      // the node's server certificate
	root      *tls.Config // a client that presents root's certificate
	acl       string
}

func newIdentity(t *testing.T) identity {
	t.Helper()
	ca := pkitest.NewCA(t)
	cert, key := ca.Issue(t, "node", true)
	rootCert, rootKey := ca.Issue(t, "root", false)
	acl := filepath.Join(ca.Dir, "acl.csv")
	writeFile(t, acl, "p, root, *, *\n")
	return identity{ca: ca, cert: cert, key: key, root: ca.TLSConfig(t, rootCert, rootKey), acl: acl}
}

// config is a node with id's TLS in dir, on a free loopback port.
func (id identity) config(t *testing.T, dir string) node.Config {
	t.Helper()
	return node.Config{
		DataDir: dir, Addr: "127.0.0.1:0", NodeID: "n1", Version: "test",
		TLSCert: id.cert, TLSKey: id.key, TLSCA: id.ca.CAFile, ACL: id.acl,
		Logger: clustertest.Logger(t),
	}
}

// gossip makes cfg gossip on a free loopback port, joining join.
func gossip(t *testing.T, cfg node.Config, join ...string) node.Config {
	t.Helper()
	cfg.Cluster.GossipKey = []byte("0123456789abcdef0123456789abcdef")
	cfg.Cluster.GossipAddr = freeGossipAddr(t)
	cfg.Cluster.Join = join
	cfg.Cluster.RaftTimeout = 500 * time.Millisecond
	return cfg
}

// freeGossipAddr is a loopback address whose port is free for TCP and UDP.
func freeGossipAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port for gossip")
	return ""
}

// running is a node whose Run the test runs in a goroutine.
type running struct {
	*node.Node
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	err    error // what Run returned, once done is closed
}

// start builds cfg's node and runs it until stop or the end of the test.
func start(t *testing.T, cfg node.Config) *running {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Node: n, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = n.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stopped runs cfg's node and stops it, so its data dir has the state of
// a node that ran.
func stopped(t *testing.T, cfg node.Config) {
	t.Helper()
	if err := start(t, cfg).stop(t); err != nil {
		t.Fatal(err)
	}
}

// stop ends Run's context (once) and returns what Run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.once.Do(r.cancel)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's end")
	}
	return r.err
}

// client is a Connect client of addr over HTTP/2: TLS with tlsConfig, or
// plaintext (h2c) when it is nil. Its connections close when the test ends.
func client(t *testing.T, addr string, tlsConfig *tls.Config) (_ logv1connect.LogServiceClient, _ *http.Client, url string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsConfig, Protocols: new(http.Protocols)}
	url = "https://" + addr
	if tlsConfig == nil {
		tr.Protocols.SetUnencryptedHTTP2(true)
		url = "http://" + addr
	} else {
		tr.Protocols.SetHTTP2(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return logv1connect.NewLogServiceClient(hc, url), hc, url
}

// produce appends values one by one, then as one batch, and returns the
// offsets the node acknowledged.
func produce(t *testing.T, c logv1connect.LogServiceClient, values ...string) []uint64 {
	t.Helper()
	ctx := t.Context()
	var offsets []uint64
	for _, v := range values {
		res, err := c.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(v)}})
		if err != nil {
			t.Fatalf("Produce %q: %v", v, err)
		}
		offsets = append(offsets, res.GetOffset())
	}
	return offsets
}

// consume reads n records from offset with ConsumeStream and checks that
// Consume reads the same ones.
func consume(t *testing.T, c logv1connect.LogServiceClient, offset uint64, n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: offset})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var got []string
	for len(got) < n && stream.Receive() {
		msg := stream.Msg()
		recs := msg.GetRecords()
		if msg.GetRecord() != nil {
			recs = append(recs, msg.GetRecord())
		}
		for _, r := range recs {
			got = append(got, string(r.GetValue()))
		}
	}
	if len(got) < n {
		t.Fatalf("ConsumeStream from %d: %d records (%v), want %d: %v", offset, len(got), got, n, stream.Err())
	}
	for i, v := range got[:n] {
		res, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: offset + uint64(i)})
		if err != nil || string(res.GetRecord().GetValue()) != v {
			t.Fatalf("Consume %d = %v, %v; the stream read %q", offset+uint64(i), res, err, v)
		}
	}
	return got[:n]
}

// health asks the gRPC health check about service.
func health(t *testing.T, hc *http.Client, url, service string) grpchealth.Status {
	t.Helper()
	res, err := grpchealth.NewClient(hc, url).Check(t.Context(), &grpchealth.CheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check of %q: %v", service, err)
	}
	return res.Status
}

// servers is GetServers as "id@addr" with a "*" after the leader.
func servers(t *testing.T, c logv1connect.LogServiceClient) []string {
	t.Helper()
	res, err := c.GetServers(t.Context(), &logv1.GetServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range res.GetServers() {
		id := s.GetId() + "@" + s.GetRpcAddr()
		if s.GetIsLeader() {
			id += "*"
		}
		out = append(out, id)
	}
	return out
}

// waitFor polls cond for up to 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
