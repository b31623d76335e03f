package membership_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proglog/proglog/membership"
	"github.com/proglog/proglog/pki/pkitest"
)

// keyPair names a certificate file and its key file.
type keyPair struct{ cert, key string }

// tlsServer serves HTTP/2 over TLS on 127.0.0.1 as a node's port does: with
// the certificate kp, verifying client certificates (when given) against
// trust. It returns the address.
func tlsServer(t *testing.T, kp keyPair, trust *pkitest.CA) string {
	t.Helper()
	return tlsServeOn(t, nil, kp, trust)
}

// tlsServeOn is tlsServer on ln (nil: a new loopback listener).
func tlsServeOn(t *testing.T, ln net.Listener, kp keyPair, trust *pkitest.CA) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(kp.cert, kp.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.EnableHTTP2 = true
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: trust.Pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// server writes a server certificate of ca named name, for 127.0.0.1 or,
// when given, for hosts.
func server(t *testing.T, ca *pkitest.CA, name string, hosts ...string) keyPair {
	t.Helper()
	var kp keyPair
	kp.cert, kp.key = ca.Issue(t, name, true)
	if len(hosts) > 0 {
		cert, key, err := ca.IssueServer(name, hosts)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kp.cert, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kp.key, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kp
}

// clusterVerifier is what a node of ca verifies joiners with.
func clusterVerifier(t *testing.T, ca *pkitest.CA) membership.VerifyFunc {
	t.Helper()
	cert, key := ca.Issue(t, "leader", true)
	return membership.TLSVerifier(ca.TLSConfig(t, cert, key))
}

// clientOnly writes a certificate of ca for 127.0.0.1 that is good for
// client authentication only.
func clientOnly(t *testing.T, ca *pkitest.CA) keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client-only"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPair{cert: filepath.Join(ca.Dir, "client-only.pem"), key: filepath.Join(ca.Dir, "client-only-key.pem")}
	if err := os.WriteFile(kp.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return kp
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestTLSVerifier(t *testing.T) {
	ca, foreign := pkitest.NewCA(t), pkitest.NewCA(t)
	verify := clusterVerifier(t, ca)
	client := clientOnly(t, ca)
	tests := []struct {
		name string
		addr string
		want error // nil: admitted
	}{
		{"the cluster's CA, for the address", tlsServer(t, server(t, ca, "good"), ca), nil},
		{"a foreign CA", tlsServer(t, server(t, foreign, "stranger"), foreign), membership.ErrForeignCertificate},
		{"the cluster's CA, another host", tlsServer(t, server(t, ca, "elsewhere", "10.9.9.9", "elsewhere.example"), ca), membership.ErrWrongAddress},
		{"the cluster's CA, for the address, but for clients only", tlsServer(t, client, ca), membership.ErrForeignCertificate},
		{"the cluster's CA, but it distrusts this node", tlsServer(t, server(t, ca, "distrusting"), foreign), membership.ErrPeerRefused},
		{"nothing listening", closedAddr(t), membership.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := verify(ctx, "n9", tt.addr)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
}
