package pki_test

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
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/internal/syncbuf"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
)

// replace writes data to path the safe way (write, then rename), as
// config management and Kubernetes' symlink swap do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// metric is the value of the unlabelled metric name in reg.
func metric(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// node is a server identity in files, as proglog serve is given it: the
// certificate and key of a test CA, and a CA file of its own.
type node struct {
	ca                *pkitest.CA
	cert, key, bundle string
}

func newNode(t *testing.T, ca *pkitest.CA) node {
	t.Helper()
	cert, key := ca.Issue(t, "node", true)
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	replace(t, bundle, ca.CertPEM)
	return node{ca: ca, cert: cert, key: key, bundle: bundle}
}

func newReloader(t *testing.T, n node, chain bool) (*pki.Reloader, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := pki.NewReloader(pki.ReloaderConfig{CertFile: n.cert, KeyFile: n.key, CAFile: n.bundle, ChainToCA: chain, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

// serve runs an HTTPS server on loopback with cfg until the test ends. It
// answers with the Common Name of the client certificate it verified ("" for
// none).
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if chains := r.TLS.VerifiedChains; len(chains) > 0 {
				fmt.Fprint(w, chains[0][0].Subject.CommonName)
			}
		}),
		TLSConfig: cfg,
		ErrorLog:  log.New(io.Discard, "", 0), // refused handshakes are expected
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// caller is an HTTPS client whose connections stay open for reuse until the
// test ends.
type caller struct {
	hc *http.Client
	tr *http.Transport
}

func newCaller(t *testing.T, cfg *tls.Config) caller {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return caller{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr: tr}
}

// get asks addr and returns the serial of the server's certificate and the
// Common Name the server verified.
func (c caller) get(addr string) (serial *big.Int, cn string, err error) {
	resp, err := c.hc.Get("https://" + addr)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, string(body), nil
}

// serialOf is the serial of the certificate in certFile; nil while the file
// is being written.
func serialOf(t *testing.T, certFile string) *big.Int {
	t.Helper()
	block, _ := pem.Decode(read(t, certFile))
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return cert.SerialNumber
}

func TestReloaderPicksUpNewCertificate(t *testing.T) {
	ca := pkitest.NewCA(t)
	n := newNode(t, ca)
	r, reg := newReloader(t, n, true)
	first := r.Certificate()
	if got := metric(t, reg, "proglog_tls_cert_not_after_seconds"); got != float64(first.NotAfter.Unix()) {
		t.Errorf("cert_not_after_seconds = %v, want %v", got, first.NotAfter.Unix())
	}
	addr := serve(t, r.ServerConfig())
	aliceCert, aliceKey := ca.Issue(t, "alice", false)
	alice := ca.TLSConfig(t, aliceCert, aliceKey)
	old := newCaller(t, alice)
	if serial, cn, err := old.get(addr); err != nil || serial.Cmp(first.SerialNumber) != 0 || cn != "alice" {
		t.Fatalf("before the renewal: serial %v, cn %q, %v; want %v, alice", serial, cn, err, first.SerialNumber)
	}

	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v", changed, err)
	}
	// A renewal: new key, serial and expiry, written over the files.
	renewed := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	ca.IssueValid(t, "node", true, time.Now().Add(-time.Minute), renewed)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload after the renewal = %v, %v", changed, err)
	}
	now := r.Certificate()
	if now.SerialNumber.Cmp(first.SerialNumber) == 0 || !now.NotAfter.Equal(renewed) {
		t.Fatalf("in force: serial %v until %v; want a new one until %v", now.SerialNumber, now.NotAfter, renewed)
	}
	if got := metric(t, reg, "proglog_tls_cert_not_after_seconds"); got != float64(renewed.Unix()) {
		t.Errorf("cert_not_after_seconds = %v, want %v", got, renewed.Unix())
	}
	if got := metric(t, reg, "proglog_tls_reloads_total"); got != 1 {
		t.Errorf("reloads_total = %v, want 1", got)
	}
	// The open connection keeps its handshake; a new one gets the new certificate.
	if serial, cn, err := old.get(addr); err != nil || serial.Cmp(first.SerialNumber) != 0 || cn != "alice" {
		t.Errorf("open connection after the renewal: serial %v, cn %q, %v; want the old %v", serial, cn, err, first.SerialNumber)
	}
	if serial, cn, err := newCaller(t, alice).get(addr); err != nil || serial.Cmp(now.SerialNumber) != 0 || cn != "alice" {
		t.Errorf("new connection: serial %v, cn %q, %v; want %v", serial, cn, err, now.SerialNumber)
	}
}

func TestReloaderKeepsThePreviousOnBadFiles(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	n := newNode(t, ca)
	goodCert, goodKey, goodCA := read(t, n.cert), read(t, n.key), read(t, n.bundle)
	// Material to break the files with.
	oc, ok := ca.Issue(t, "other", true)
	otherCert, otherKey := read(t, oc), read(t, ok)
	expiredCert, expiredKey := ca.IssueValid(t, "expired", true, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	futureCert, futureKey := ca.IssueValid(t, "future", true, time.Now().Add(time.Hour), time.Now().Add(48*time.Hour))
	foreignCert, foreignKey := other.Issue(t, "foreign", true)

	tests := []struct {
		name  string
		cert  []byte // nil: the good one
		key   []byte
		ca    []byte
		rm    string // a file to remove instead
		is    error
		wants string // in the error
	}{
		{name: "garbage certificate", cert: []byte("not PEM"), is: pki.ErrNoPEM, wants: "node.pem"},
		{name: "half-written certificate", cert: goodCert[:len(goodCert)/2], is: pki.ErrNoPEM},
		{name: "key of another certificate", key: otherKey, is: pki.ErrKeyMismatch, wants: "node-key.pem"},
		{name: "certificate renewed, key not yet", cert: otherCert, is: pki.ErrKeyMismatch},
		{name: "empty key", key: []byte{}, is: pki.ErrNoPEM},
		{name: "expired", cert: read(t, expiredCert), key: read(t, expiredKey), is: pki.ErrExpired, wants: "expired at"},
		{name: "not valid yet", cert: read(t, futureCert), key: read(t, futureKey), is: pki.ErrExpired, wants: "not valid until"},
		{name: "CA file without certificates", ca: []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), is: pki.ErrNoPEM, wants: "bundle.pem"},
		{name: "certificate of another CA", cert: read(t, foreignCert), key: read(t, foreignKey), is: pki.ErrNotChained},
		{name: "old CA removed first", ca: other.CertPEM, is: pki.ErrNotChained},
		{name: "key removed", rm: n.key, is: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replace(t, n.cert, goodCert)
			replace(t, n.key, goodKey)
			replace(t, n.bundle, goodCA)
			r, reg := newReloader(t, n, true)
			before := r.Certificate().SerialNumber
			pick := func(b, good []byte) []byte {
				if b == nil {
					return good
				}
				return b
			}
			if tt.rm != "" {
				if err := os.Remove(tt.rm); err != nil {
					t.Fatal(err)
				}
			} else {
				replace(t, n.cert, pick(tt.cert, goodCert))
				replace(t, n.key, pick(tt.key, goodKey))
				replace(t, n.bundle, pick(tt.ca, goodCA))
			}
			changed, err := r.Reload()
			t.Logf("Reload: %v", err)
			if changed || !errors.Is(err, tt.is) || !strings.Contains(fmt.Sprint(err), tt.wants) {
				t.Fatalf("Reload = %v, %v; want %v with %q", changed, err, tt.is, tt.wants)
			}
			if got := r.Certificate().SerialNumber; got.Cmp(before) != 0 {
				t.Fatalf("in force: serial %v, want the previous %v", got, before)
			}
			if got := metric(t, reg, "proglog_tls_reload_errors_total"); got != 1 {
				t.Fatalf("reload_errors_total = %v, want 1", got)
			}
			// The same content is counted once.
			r.Reload()
			if got := metric(t, reg, "proglog_tls_reload_errors_total"); got != 1 {
				t.Fatalf("reload_errors_total after a second look = %v, want 1", got)
			}
			// The next change is tried again.
			replace(t, n.cert, goodCert)
			replace(t, n.key, goodKey)
			replace(t, n.bundle, append(slicesClone(goodCA), '\n'))
			if changed, err := r.Reload(); !changed || err != nil {
				t.Fatalf("Reload of good files = %v, %v", changed, err)
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// A CA rotation, from the server's side: the CA file gains the new CA, then
// loses the old one. Client certificates of a CA in the file are accepted
// on new handshakes, others refused; a connection open before the old CA
// went keeps working.
func TestReloaderRotatesTheCA(t *testing.T) {
	oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t)
	n := newNode(t, oldCA)
	r, _ := newReloader(t, n, true)
	addr := serve(t, r.ServerConfig())
	// The callers trust both CAs, as clients do during a rotation.
	both := x509.NewCertPool()
	both.AddCert(oldCA.Cert)
	both.AddCert(newCA.Cert)
	callerOf := func(ca *pkitest.CA, name string) *tls.Config {
		cert, key := ca.Issue(t, name, false)
		cfg := ca.TLSConfig(t, cert, key)
		cfg.RootCAs = both
		return cfg
	}
	alice, bob := callerOf(oldCA, "alice"), callerOf(newCA, "bob") // old CA, new CA
	check := func(step string, cfg *tls.Config, want string) {
		t.Helper()
		_, cn, err := newCaller(t, cfg).get(addr)
		if want == "" && err == nil {
			t.Errorf("%s: a new connection was accepted as %q, want it refused", step, cn)
		}
		if want != "" && (err != nil || cn != want) {
			t.Errorf("%s: a new connection: %q, %v; want %q", step, cn, err, want)
		}
	}
	reload := func(step string) {
		t.Helper()
		if changed, err := r.Reload(); !changed || err != nil {
			t.Fatalf("%s: Reload = %v, %v", step, changed, err)
		}
	}

	check("old CA only", alice, "alice")
	check("old CA only", bob, "")

	replace(t, n.bundle, append(slicesClone(oldCA.CertPEM), newCA.CertPEM...))
	reload("old and new CA")
	check("old and new CA", alice, "alice")
	check("old and new CA", bob, "bob")
	open := newCaller(t, alice)
	if _, cn, err := open.get(addr); err != nil || cn != "alice" {
		t.Fatalf("alice: %q, %v", cn, err)
	}

	// The node's certificate is reissued by the new CA, then the old CA goes.
	newCA.Issue(t, "node", true)
	replace(t, n.cert, read(t, filepath.Join(newCA.Dir, "node.pem")))
	replace(t, n.key, read(t, filepath.Join(newCA.Dir, "node-key.pem")))
	reload("node certificate of the new CA")
	replace(t, n.bundle, newCA.CertPEM)
	reload("new CA only")
	check("new CA only", alice, "")
	check("new CA only", bob, "bob")
	if _, cn, err := open.get(addr); err != nil || cn != "alice" {
		t.Errorf("alice's connection opened before the old CA went: %q, %v; want it to go on", cn, err)
	}
}

// DialConfig makes the checks of crypto/tls's own verification, against
// the CA in force: for each server certificate, a dial succeeds or fails
// as it does with RootCAs and ServerName, and with the same kind of error.
func TestDialConfigVerifiesAsCryptoTLS(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	n := newNode(t, ca)
	r, _ := newReloader(t, n, false)
	now := time.Now()
	serverOf := func(certFile, keyFile string) string {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return listen(t, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert})
	}
	issue := func(ca *pkitest.CA, name string, hosts ...string) string {
		c, k, err := ca.IssueServer(name, hosts)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		return serverOf(writeFile(t, filepath.Join(dir, "c.pem"), c), writeFile(t, filepath.Join(dir, "k.pem"), k))
	}
	good := issue(ca, "good", "127.0.0.1", "localhost")
	otherHost := issue(ca, "elsewhere", "127.0.0.2", "elsewhere.example")
	foreign := issue(other, "foreign", "127.0.0.1", "localhost")
	expired := serverOf(ca.IssueValid(t, "expired", true, now.Add(-48*time.Hour), now.Add(-time.Hour)))
	clientOnly := serverOf(clientCertWithIP(t, ca))

	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	tests := []struct {
		name       string
		addr, host string
		as         any // nil: succeeds
	}{
		{"IP SAN", good, "127.0.0.1", nil},
		{"DNS SAN", good, "localhost", nil},
		{"DNS name case and dot", good, "LocalHost.", nil},
		{"IP not in the certificate", otherHost, "127.0.0.1", &hostname},
		{"name not in the certificate", otherHost, "localhost", &hostname},
		{"another CA", foreign, "127.0.0.1", &unknown},
		{"expired", expired, "127.0.0.1", &invalid},
		{"client certificate as a server's", clientOnly, "127.0.0.1", &invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			std := ca.TLSConfig(t, n.cert, n.key)
			std.ServerName = tt.host
			_, stdErr := dialTLS(t, tt.addr, std)
			_, err := dialTLS(t, tt.addr, pki.WithServerName(r.DialConfig(), tt.host))
			t.Logf("crypto/tls: %v; DialConfig: %v", stdErr, err)
			if (err == nil) != (stdErr == nil) {
				t.Fatalf("DialConfig: %v; crypto/tls: %v", err, stdErr)
			}
			if tt.as == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(stdErr, tt.as) {
				t.Fatalf("crypto/tls's error %v is not a %T", stdErr, tt.as)
			}
			var verr *tls.CertificateVerificationError
			if !errors.As(err, tt.as) || !errors.As(err, &verr) {
				t.Fatalf("DialConfig's error %v is not a %T in a %T", err, tt.as, verr)
			}
		})
	}

	t.Run("IP without WithServerName", func(t *testing.T) {
		if _, err := dialTLS(t, good, r.DialConfig()); err == nil {
			t.Fatal("a dial by IP address without a name to verify succeeded")
		}
	})
	t.Run("name from SNI", func(t *testing.T) {
		cfg := r.DialConfig()
		cfg.ServerName = "localhost" // as net/http and tls.Dialer set it
		if _, err := dialTLS(t, good, cfg); err != nil {
			t.Fatal(err)
		}
	})
}

// clientCertWithIP is a client certificate (no server authentication) for
// 127.0.0.1, so that only its key usage is wrong for a server.
func clientCertWithIP(t *testing.T, ca *pkitest.CA) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "client-only"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return writeFile(t, filepath.Join(dir, "c.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		writeFile(t, filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// DialConfig presents the certificate in force and trusts the CA in force,
// both as of each handshake.
func TestDialConfigFollowsReloads(t *testing.T) {
	oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t)
	n := newNode(t, oldCA)
	r, _ := newReloader(t, n, false)
	dial := r.DialConfig()
	newPeer := func() string {
		c, k := newCA.Issue(t, "peer", true)
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return listen(t, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert})
	}
	peer := newPeer()
	if _, err := dialTLS(t, peer, pki.WithServerName(dial, "127.0.0.1")); err == nil {
		t.Fatal("a peer of the new CA was trusted before the CA file had it")
	}
	replace(t, n.bundle, append(slicesClone(oldCA.CertPEM), newCA.CertPEM...))
	newCA.Issue(t, "node", true)
	replace(t, n.cert, read(t, filepath.Join(newCA.Dir, "node.pem")))
	replace(t, n.key, read(t, filepath.Join(newCA.Dir, "node-key.pem")))
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	presented, err := dialTLS(t, peer, pki.WithServerName(dial, "127.0.0.1"))
	if err != nil {
		t.Fatalf("a peer of the new CA after the reload: %v", err)
	}
	if want := r.Certificate().SerialNumber; presented.Cmp(want) != 0 {
		t.Fatalf("the dial presented serial %v, want the reloaded %v", presented, want)
	}
}

// listen accepts TLS connections on loopback with cfg until the test ends;
// each one, once its handshake is done, gets back the serial of the client
// certificate, as a decimal line.
func listen(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				tc := conn.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				serial := "none"
				if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
					serial = certs[0].SerialNumber.String()
				}
				fmt.Fprintln(tc, serial)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialTLS dials addr, a listen server, with cfg and returns the serial of
// the client certificate it saw.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*big.Int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	line, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	serial, ok := new(big.Int).SetString(strings.TrimSpace(string(line)), 10)
	if !ok {
		return nil, fmt.Errorf("server saw no client certificate (%q)", line)
	}
	return serial, nil
}

// Run reloads on its own, logs a refused change once and stops with its
// context.
func TestReloaderRun(t *testing.T) {
	ca := pkitest.NewCA(t)
	n := newNode(t, ca)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	r, err := pki.NewReloader(pki.ReloaderConfig{CertFile: n.cert, KeyFile: n.key, CAFile: n.bundle, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, 5*time.Millisecond)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
	replace(t, n.bundle, []byte("garbage"))
	waitUntil("the refusal", func() bool { return metric(t, reg, "proglog_tls_reload_errors_total") == 1 })
	time.Sleep(50 * time.Millisecond) // ten more looks at the same content
	if got := strings.Count(logs.String(), "tls reload failed"); got != 1 {
		t.Errorf("%d lines say the reload failed, want 1:\n%s", got, logs.String())
	}
	replace(t, n.bundle, ca.CertPEM)
	before := r.Certificate().SerialNumber
	ca.Issue(t, "node", true)
	waitUntil("the renewal", func() bool {
		got, want := r.Certificate().SerialNumber, serialOf(t, n.cert)
		return got.Cmp(before) != 0 && want != nil && got.Cmp(want) == 0
	})
	waitUntil("the log line", func() bool { return strings.Contains(logs.String(), "tls reloaded") })
}

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = syncbuf.Buffer
