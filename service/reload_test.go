package service_test

import (
	"crypto/tls"
	"math/big"
	"net/http"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
	"github.com/proglog/proglog/service"
)

// A server on a pki.Reloader's config serves each handshake the identity
// in force, with the server's own versions, cipher suites and protocols.
func TestServerWithReloadedIdentity(t *testing.T) {
	ca := pkitest.NewCA(t)
	certFile, keyFile := ca.Issue(t, "server", true)
	r, err := pki.NewReloader(pki.ReloaderConfig{CertFile: certFile, KeyFile: keyFile, CAFile: ca.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	const proto = "proglog-test"
	handoff := make(chan tls.ConnectionState, 1)
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.TLS = r.ServerConfig()
		c.Handoffs = map[string]func(*tls.Conn){proto: func(conn *tls.Conn) {
			handoff <- conn.ConnectionState()
			conn.Close()
		}}
	}})
	rootCert, rootKey := ca.Issue(t, idRoot, false)
	root := ca.TLSConfig(t, rootCert, rootKey)

	// call produces a record over a client of its own and returns the
	// server certificate's serial its connection saw.
	call := func(c logv1connect.LogServiceClient, served func() *big.Int) *big.Int {
		t.Helper()
		if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("x")}); err != nil {
			t.Fatalf("Produce: %v", err)
		}
		return served()
	}
	newClient := func() (logv1connect.LogServiceClient, func() *big.Int) {
		var last *big.Int
		cfg := root.Clone()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			last = cs.PeerCertificates[0].SerialNumber
			return nil
		}
		tr := &http.Transport{TLSClientConfig: cfg, Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP2(true)
		t.Cleanup(tr.CloseIdleConnections)
		return logv1connect.NewLogServiceClient(&http.Client{Transport: tr}, e.url), func() *big.Int { return last }
	}
	first := r.Certificate().SerialNumber
	old, oldServed := newClient()
	if got := call(old, oldServed); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}

	// Raft's protocol by ALPN, with the client certificate verified.
	hcfg := root.Clone()
	hcfg.NextProtos, hcfg.ServerName = []string{proto}, "127.0.0.1"
	conn, err := tls.Dial("tcp", e.addr, hcfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	cs := <-handoff
	if cs.NegotiatedProtocol != proto || len(cs.VerifiedChains) == 0 || cs.VerifiedChains[0][0].Subject.CommonName != idRoot {
		t.Fatalf("handoff: protocol %q, verified chains %d", cs.NegotiatedProtocol, len(cs.VerifiedChains))
	}

	// TLS 1.2 with CBC only: refused, as the server's cipher suites say.
	cbc := root.Clone()
	cbc.MaxVersion, cbc.ServerName = tls.VersionTLS12, "127.0.0.1"
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if conn, err := tls.Dial("tcp", e.addr, cbc); err == nil {
		conn.Close()
		t.Fatal("a TLS 1.2 client offering only CBC was served")
	}

	// A renewal: new connections see it, the open one goes on.
	ca.IssueValid(t, "server", true, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	renewed := r.Certificate().SerialNumber
	if renewed.Cmp(first) == 0 {
		t.Fatal("the renewal kept the serial")
	}
	fresh, freshServed := newClient()
	if got := call(fresh, freshServed); got.Cmp(renewed) != 0 {
		t.Errorf("new connection: served serial %v, want the renewed %v", got, renewed)
	}
	if got := call(old, oldServed); got.Cmp(first) != 0 {
		t.Errorf("open connection: it handshook again (serial %v)", got)
	}
}
