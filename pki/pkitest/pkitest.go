// Package pkitest provides a certificate authority for tests, in the manner
// of net/http/httptest: its certificates are written to files in a temporary
// directory, as proglog's servers and clients load them, and every failure
// ends the test.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proglog/proglog/pki"
)

// CA is a certificate authority for tests whose certificates are written to
// files in a temporary directory.
type CA struct {
	// The authority itself, whose IssueServer and IssueClient give a test
	// certificates as PEM rather than as files.
	*pki.CA
	// Dir is the test's temporary directory that holds the files.
	Dir string
	// CAFile is the CA certificate in PEM, as pki.ServerTLSConfig and
	// pki.ClientTLSConfig take it.
	CAFile string
	// Pool holds the CA certificate, for a tls.Config's RootCAs or ClientCAs.
	Pool *x509.CertPool
}

// NewCA makes a CA and writes its certificate to CAFile in a new temporary
// directory of t.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := pki.NewCA("proglog test CA")
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{CA: ca, Dir: t.TempDir(), Pool: x509.NewCertPool()}
	c.Pool.AddCert(ca.Cert)
	c.CAFile = filepath.Join(c.Dir, "ca.pem")
	writeFile(t, c.CAFile, ca.CertPEM)
	return c
}

// Issue writes a certificate for the Common Name name and its key to Dir, as
// name.pem and name-key.pem, and returns the two paths. A server certificate
// (server true) is for 127.0.0.1 and serves as a client certificate too, as a
// node's does when it dials its peers; a client certificate is only that.
// Issuing a name again replaces its files.
func (c *CA) Issue(t testing.TB, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	if name == "" || filepath.Base(name) != name {
		t.Fatalf("pkitest: %q is not a file name", name)
	}
	var cert, key []byte
	var err error
	if server {
		cert, key, err = c.IssueServer(name, []string{"127.0.0.1"})
	} else {
		cert, key, err = c.IssueClient(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(c.Dir, name+".pem")
	keyFile = filepath.Join(c.Dir, name+"-key.pem")
	writeFile(t, certFile, cert)
	writeFile(t, keyFile, key)
	return certFile, keyFile
}

// IssueValid is Issue with a validity period of the test's choosing: a
// renewal (a new serial and NotAfter) or an expired certificate.
func (c *CA) IssueValid(t testing.TB, name string, server bool, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	if name == "" || filepath.Base(name) != name {
		t.Fatalf("pkitest: %q is not a file name", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, key.Public(), c.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(c.Dir, name+".pem")
	keyFile = filepath.Join(c.Dir, name+"-key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// TLSConfig is the configuration of a caller that presents the certificate in
// certFile and keyFile and trusts servers whose certificates chain to c.
func (c *CA) TLSConfig(t testing.TB, certFile, keyFile string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
