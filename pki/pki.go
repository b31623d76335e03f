// Package pki makes and loads the certificates proglog uses for mutual TLS:
// a certificate authority, server certificates (which double as client
// certificates for node-to-node traffic), client certificates whose Common
// Name is the caller's identity, and PKCS#12 bundles for browsers. A
// Reloader keeps a server's certificate and CA file in force as the files
// change, for its port and its dials to its peers, without dropping
// connections.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Errors a caller may branch on; each is wrapped with the file or value at fault.
var (
	// ErrNoPEM is returned when input holds no PEM block of the expected type.
	ErrNoPEM = errors.New("pki: no PEM data")
	// ErrNotCA is returned by LoadCA when the certificate may not sign others.
	ErrNotCA = errors.New("pki: certificate is not a CA")
	// ErrKeyMismatch is returned when a private key does not belong to its certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match certificate")
	// ErrInvalid is returned for unusable arguments: an empty name, no hosts,
	// a certificate without its key.
	ErrInvalid = errors.New("pki: invalid argument")
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// leafValidity is 825 days: the longest lifetime Apple platforms accept
	// for a TLS server certificate, even from a private CA.
	leafValidity = 825 * 24 * time.Hour
	// backdate tolerates clocks that run slightly behind the issuer's.
	backdate = time.Hour
)

// CA is a certificate authority that issues proglog's certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// NewCA makes a self-signed CA with an ECDSA P-256 key, valid for 10 years.
func NewCA(commonName string) (*CA, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, fmt.Errorf("%w: empty CA common name", ErrInvalid)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"proglog"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // x509 derives SubjectKeyId for CAs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der)}, nil
}

// LoadCA reads a CA certificate and its private key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %w", certFile, ErrNotCA)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if err := matchKey(cert, key); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(cert.Raw)}, nil
}

// KeyPEM encodes the CA's private key as a PKCS#8 "PRIVATE KEY" block.
func (ca *CA) KeyPEM() ([]byte, error) {
	return encodeKey(ca.Key)
}

// IssueServer issues a certificate for a server reachable at hosts (DNS
// names or IP addresses). It is valid for client authentication too, so
// servers can present it to each other.
func (ca *CA) IssueServer(commonName string, hosts []string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("%w: a server certificate needs at least one host", ErrInvalid)
	}
	tmpl := &x509.Certificate{
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, nil, fmt.Errorf("%w: empty host", ErrInvalid)
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(commonName, tmpl)
}

// IssueClient issues a client certificate; commonName is the identity the
// server's ACL sees.
func (ca *CA) IssueClient(commonName string) (certPEM, keyPEM []byte, err error) {
	return ca.issue(commonName, &x509.Certificate{
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(commonName string, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, nil, fmt.Errorf("%w: empty common name", ErrInvalid)
	}
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, fmt.Errorf("%w: CA without certificate or key", ErrInvalid)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.Subject = pkix.Name{CommonName: commonName}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(leafValidity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %q: %w", commonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// EncodePKCS12 bundles a certificate, its key and the CA certificates in
// caPEM into a password-protected PKCS#12 file (AES-256 and PBKDF2, which
// NSS, Chromium, Firefox and macOS import).
func EncodePKCS12(certPEM, keyPEM, caPEM []byte, password string) ([]byte, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: PKCS#12 certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: PKCS#12 key: %w", err)
	}
	if err := matchKey(cert, key); err != nil {
		return nil, err
	}
	var cas []*x509.Certificate
	if len(bytes.TrimSpace(caPEM)) > 0 {
		if cas, err = parseCerts(caPEM); err != nil {
			return nil, fmt.Errorf("pki: PKCS#12 CA certificates: %w", err)
		}
	}
	pfx, err := pkcs12.Modern.Encode(key, cert, cas, password)
	if err != nil {
		return nil, fmt.Errorf("pki: encode PKCS#12: %w", err)
	}
	return pfx, nil
}

// ServerTLSConfig loads a server's certificate and the CA that client
// certificates must chain to. Clients may come without a certificate (a
// browser loading the dashboard); the service then treats them as
// "anonymous". A certificate that is presented but does not verify fails the
// handshake. An empty caFile accepts no client certificates at all.
func ServerTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: load server certificate: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.NoClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientTLSConfig trusts the servers whose certificates chain to caFile (the
// system roots when caFile is empty) and presents certFile/keyFile when both
// are given.
func ClientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
	}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("pki: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, fmt.Errorf("%w: client certificate and key go together (cert %q, key %q)", ErrInvalid, certFile, keyFile)
	}
	return cfg, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA bundle: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	certs, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseCerts returns every CERTIFICATE block in data, in order.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrNoPEM)
	}
	return certs, nil
}

// parseKey accepts PKCS#8, SEC 1 (EC) and PKCS#1 (RSA) private keys.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: no private key block", ErrNoPEM)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: parse %s: %w", strings.ToLower(block.Type), err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported key type %T", ErrInvalid, key)
		}
		return signer, nil
	}
}

func matchKey(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return ErrKeyMismatch
	}
	return nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // never zero
}
