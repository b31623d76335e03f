package service

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
)

// failOnce is a listener whose first Accept fails as when the process is
// out of file descriptors.
type failOnce struct {
	net.Listener
	failed bool
}

func (l *failOnce) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// An accept error that is not the listener closing does not stop serving.
func TestGateRetriesAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := testTLSPair(t)
	g := newGate(&failOnce{Listener: ln}, serverTLS, nil, DefaultLimits(), slog.New(slog.DiscardHandler), mustConnMetrics(t))
	defer g.Close()
	go func() {
		if c, err := tls.Dial("tcp", ln.Addr().String(), clientTLS); err == nil {
			c.Close()
		}
	}()
	c, err := g.Accept()
	if err != nil {
		t.Fatalf("Accept after a failed accept: %v", err)
	}
	c.Close()
	if err := g.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	if _, err := g.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// testTLSPair is a server config and a client config that trusts it.
func testTLSPair(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca := pkitest.NewCA(t)
	cert, key := ca.Issue(t, "server", true)
	server, err := pki.ServerTLSConfig(cert, key, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	client = ca.TLSConfig(t, cert, key)
	client.ServerName = "127.0.0.1"
	return server, client
}

func mustConnMetrics(t *testing.T) *connMetrics {
	t.Helper()
	m, err := newConnMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
