package pki_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/proglog/proglog/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// files is a CA with one server and some clients written to a directory.
type files struct {
	dir                string
	ca                 *pki.CA
	caFile, caKey      string
	serverCert, server string
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newFiles(t *testing.T, name string) *files {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA(name + " CA")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	f := &files{dir: dir, ca: ca}
	f.caFile = writeFile(t, filepath.Join(dir, "ca.pem"), ca.CertPEM)
	f.caKey = writeFile(t, filepath.Join(dir, "ca-key.pem"), keyPEM)
	certPEM, srvKey, err := ca.IssueServer("server", []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	f.serverCert = writeFile(t, filepath.Join(dir, "server.pem"), certPEM)
	f.server = writeFile(t, filepath.Join(dir, "server-key.pem"), srvKey)
	return f
}

func (f *files) client(t *testing.T, cn string) (cert, key string) {
	t.Helper()
	certPEM, keyPEM, err := f.ca.IssueClient(cn)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(f.dir, cn+".pem"), certPEM),
		writeFile(t, filepath.Join(f.dir, cn+"-key.pem"), keyPEM)
}

// handshake runs one TLS connection over loopback and returns the Common
// Name the server verified (or "" without a verified certificate) and the
// errors each side saw.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (cn string, serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cn  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			done <- result{err: err}
			return
		}
		var r result
		if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 {
			r.cn = chains[0][0].Subject.CommonName
		}
		_, r.err = tc.Write([]byte("ok"))
		done <- r
	}()
	conn, err := (&tls.Dialer{Config: clientCfg}).DialContext(t.Context(), "tcp", ln.Addr().String())
	if err == nil {
		// With TLS 1.3 the client learns that the server rejected its
		// certificate only when it reads.
		buf := make([]byte, 2)
		_, err = io.ReadFull(conn, buf)
		conn.Close()
	}
	r := <-done
	return r.cn, r.err, err
}

func TestHandshake(t *testing.T) {
	good := newFiles(t, "good")
	other := newFiles(t, "other")
	aliceCert, aliceKey := good.client(t, "alice")
	malloryCert, malloryKey := other.client(t, "mallory")

	serverCfg, err := pki.ServerTLSConfig(good.serverCert, good.server, good.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if serverCfg.ClientAuth != tls.VerifyClientCertIfGiven || serverCfg.MinVersion != tls.VersionTLS12 ||
		!slices.Equal(serverCfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Fatalf("server config: ClientAuth %v MinVersion %x NextProtos %v", serverCfg.ClientAuth, serverCfg.MinVersion, serverCfg.NextProtos)
	}

	tests := []struct {
		name          string
		ca, cert, key string
		serverName    string
		wantCN        string
		wantErr       bool
		maxVersion    uint16
		force         bool // present the certificate whatever the server asks for
	}{
		{name: "client cert", ca: good.caFile, cert: aliceCert, key: aliceKey, serverName: "localhost", wantCN: "alice"},
		{name: "client cert TLS 1.2", ca: good.caFile, cert: aliceCert, key: aliceKey, serverName: "127.0.0.1", wantCN: "alice", maxVersion: tls.VersionTLS12},
		{name: "no client cert", ca: good.caFile, serverName: "localhost", wantCN: ""},
		{name: "IPv4 SAN", ca: good.caFile, serverName: "127.0.0.1"},
		// Go's client withholds a certificate that does not chain to the
		// CAs the server names, so the server sees an anonymous caller.
		{name: "cert from another CA", ca: good.caFile, cert: malloryCert, key: malloryKey, serverName: "localhost", wantCN: ""},
		{name: "cert from another CA forced", ca: good.caFile, cert: malloryCert, key: malloryKey, serverName: "localhost", force: true, wantErr: true},
		{name: "server from another CA", ca: other.caFile, cert: aliceCert, key: aliceKey, serverName: "localhost", wantErr: true},
		{name: "wrong host name", ca: good.caFile, serverName: "example.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientCfg, err := pki.ClientTLSConfig(tt.ca, tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			clientCfg.ServerName = tt.serverName
			clientCfg.MaxVersion = tt.maxVersion
			if tt.force {
				pair := clientCfg.Certificates[0]
				clientCfg.Certificates = nil
				clientCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			}
			cn, serverErr, clientErr := handshake(t, serverCfg, clientCfg)
			if tt.wantErr {
				if serverErr == nil || clientErr == nil {
					t.Fatalf("want both sides to fail; server %v, client %v", serverErr, clientErr)
				}
				if cn != "" {
					t.Fatalf("server verified %q", cn)
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server %v, client %v", serverErr, clientErr)
			}
			if cn != tt.wantCN {
				t.Fatalf("verified CN %q, want %q", cn, tt.wantCN)
			}
		})
	}
}

func TestServerCertWorksAsClientCert(t *testing.T) {
	f := newFiles(t, "peer")
	serverCfg, err := pki.ServerTLSConfig(f.serverCert, f.server, f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := pki.ClientTLSConfig(f.caFile, f.serverCert, f.server)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg.ServerName = "localhost"
	cn, serverErr, clientErr := handshake(t, serverCfg, clientCfg)
	if serverErr != nil || clientErr != nil || cn != "server" {
		t.Fatalf("cn %q, server %v, client %v", cn, serverErr, clientErr)
	}
}

func TestIssueServerSANs(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.IssueServer("node-1", []string{"node-1.internal", "10.0.0.7", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	cert := parse(t, certPEM)
	if !slices.Equal(cert.DNSNames, []string{"node-1.internal"}) {
		t.Errorf("DNS names %v", cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || cert.IPAddresses[0].String() != "10.0.0.7" || cert.IPAddresses[1].String() != "::1" {
		t.Errorf("IP addresses %v", cert.IPAddresses)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ext key usage %v", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Error("leaf is a CA")
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Error(err)
	}
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Error("leaf outlives its CA")
	}
}

func TestInvalidArguments(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
	}{
		{"empty CA name", func() error { _, err := pki.NewCA(" "); return err }},
		{"server without hosts", func() error { _, _, err := ca.IssueServer("s", nil); return err }},
		{"server with empty host", func() error { _, _, err := ca.IssueServer("s", []string{""}); return err }},
		{"client without name", func() error { _, _, err := ca.IssueClient(""); return err }},
		{"client cert without key", func() error { _, err := pki.ClientTLSConfig("", "cert.pem", ""); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, pki.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	f := newFiles(t, "load")
	other := newFiles(t, "other")

	ca, err := pki.LoadCA(f.caFile, f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(f.ca.Cert) || !bytes.Equal(ca.CertPEM, f.ca.CertPEM) {
		t.Fatal("loaded a different certificate")
	}
	// The loaded CA signs certificates that the original's pool accepts.
	certPEM, _, err := ca.IssueClient("bob")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	if _, err := parse(t, certPEM).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}

	garbage := writeFile(t, filepath.Join(t.TempDir(), "garbage.pem"), []byte("not pem"))
	tests := []struct {
		name      string
		cert, key string
		want      error
	}{
		{"key of another CA", f.caFile, other.caKey, pki.ErrKeyMismatch},
		{"leaf is not a CA", f.serverCert, f.server, pki.ErrNotCA},
		{"garbage certificate", garbage, f.caKey, pki.ErrNoPEM},
		{"garbage key", f.caFile, garbage, pki.ErrNoPEM},
		{"missing file", filepath.Join(f.dir, "nope.pem"), f.caKey, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pki.LoadCA(tt.cert, tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPKCS12RoundTrip(t *testing.T) {
	ca, err := pki.NewCA("p12 CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("carol")
	if err != nil {
		t.Fatal(err)
	}
	pfx, err := pki.EncodePKCS12(certPEM, keyPEM, ca.CertPEM, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	key, cert, cas, err := pkcs12.DecodeChain(pfx, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "carol" || !cert.Equal(parse(t, certPEM)) {
		t.Fatalf("decoded certificate %v", cert.Subject)
	}
	if len(cas) != 1 || !cas[0].Equal(ca.Cert) {
		t.Fatalf("decoded %d CA certificates", len(cas))
	}
	derKey, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: derKey})); err != nil {
		t.Fatalf("decoded key does not match the certificate: %v", err)
	}
	if _, _, _, err := pkcs12.DecodeChain(pfx, "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}

	other, err := pki.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.EncodePKCS12(certPEM, otherKey, nil, "x"); !errors.Is(err, pki.ErrKeyMismatch) {
		t.Fatalf("mismatched key: got %v", err)
	}
}

func TestEnsureDevIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	created, err := pki.EnsureDevIdentity(dir)
	if err != nil || !created {
		t.Fatalf("first call: created %v, err %v", created, err)
	}
	names := []string{pki.DevCAFile, pki.DevCAKeyFile, pki.DevServerFile, pki.DevServerKeyFile,
		pki.DevClientFile, pki.DevClientKeyFile, pki.DevClientP12File}
	before := map[string][]byte{}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = data
	}
	for _, n := range []string{pki.DevCAKeyFile, pki.DevServerKeyFile, pki.DevClientKeyFile, pki.DevClientP12File} {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", n, fi.Mode().Perm())
		}
	}

	created, err = pki.EnsureDevIdentity(dir)
	if err != nil || created {
		t.Fatalf("second call: created %v, err %v", created, err)
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, before[n]) {
			t.Errorf("%s changed on reuse", n)
		}
	}

	// The identity works end to end: root's certificate verifies as "root".
	serverCfg, err := pki.ServerTLSConfig(filepath.Join(dir, pki.DevServerFile), filepath.Join(dir, pki.DevServerKeyFile), filepath.Join(dir, pki.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		clientCfg, err := pki.ClientTLSConfig(filepath.Join(dir, pki.DevCAFile), filepath.Join(dir, pki.DevClientFile), filepath.Join(dir, pki.DevClientKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		clientCfg.ServerName = host
		cn, serverErr, clientErr := handshake(t, serverCfg, clientCfg)
		if serverErr != nil || clientErr != nil || cn != pki.DevClientName {
			t.Fatalf("%s: cn %q, server %v, client %v", host, cn, serverErr, clientErr)
		}
	}
	if _, cert, _, err := pkcs12.DecodeChain(before[pki.DevClientP12File], pki.DevP12Password); err != nil || cert.Subject.CommonName != pki.DevClientName {
		t.Fatalf("root.p12: %v", err)
	}

	// A lost PKCS#12 file is rebuilt from the existing client certificate.
	if err := os.Remove(filepath.Join(dir, pki.DevClientP12File)); err != nil {
		t.Fatal(err)
	}
	if created, err := pki.EnsureDevIdentity(dir); err != nil || !created {
		t.Fatalf("after removing root.p12: created %v, err %v", created, err)
	}
	if _, cert, _, err := pkcs12.DecodeChain(mustRead(t, filepath.Join(dir, pki.DevClientP12File)), pki.DevP12Password); err != nil || !cert.Equal(parse(t, before[pki.DevClientFile])) {
		t.Fatalf("rebuilt root.p12 does not hold root.pem: %v", err)
	}

	// A lost CA replaces everything it signed.
	if err := os.Remove(filepath.Join(dir, pki.DevCAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if created, err := pki.EnsureDevIdentity(dir); err != nil || !created {
		t.Fatalf("after removing the CA key: created %v, err %v", created, err)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, pki.DevCAFile), filepath.Join(dir, pki.DevCAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{pki.DevServerFile, pki.DevClientFile} {
		if err := parse(t, mustRead(t, filepath.Join(dir, n))).CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("%s not reissued by the new CA: %v", n, err)
		}
	}
	if _, _, cas, err := pkcs12.DecodeChain(mustRead(t, filepath.Join(dir, pki.DevClientP12File)), pki.DevP12Password); err != nil || len(cas) != 1 || !cas[0].Equal(ca.Cert) {
		t.Errorf("root.p12 not rebuilt with the new CA: %v", err)
	}
}

func FuzzEncodePKCS12(f *testing.F) {
	ca, err := pki.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM, keyPEM, ca.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), []byte{})
	f.Fuzz(func(t *testing.T, cert, key, cas []byte) {
		// Arbitrary PEM must produce an error or a valid bundle, never a panic.
		pfx, err := pki.EncodePKCS12(cert, key, cas, "pw")
		if err != nil {
			return
		}
		if _, _, _, err := pkcs12.DecodeChain(pfx, "pw"); err != nil {
			t.Fatalf("encoded bundle does not decode: %v", err)
		}
	})
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
