package pki

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors of a reload (and of NewReloader) a caller may branch on; each is
// wrapped with the file at fault.
var (
	// ErrExpired is returned for a certificate whose NotAfter has passed, or
	// whose NotBefore has not come yet.
	ErrExpired = errors.New("pki: certificate expired or not yet valid")
	// ErrNotChained is returned when Reloader.ChainToCA is set and the
	// certificate does not chain to the CA file.
	ErrNotChained = errors.New("pki: certificate does not chain to the CA file")
)

// ReloaderConfig configures a Reloader.
type ReloaderConfig struct {
	// CertFile and KeyFile are the server's certificate (chain, leaf
	// first) and key, PEM; CAFile the CA certificates that client
	// certificates (and peers' server certificates) must chain to, PEM,
	// possibly several ("" trusts no client certificate and no peer).
	CertFile, KeyFile, CAFile string
	// ChainToCA refuses a reload whose certificate does not chain to
	// CAFile, as a node's must when its peers verify it against the same
	// file. It catches a CA rotation done out of order: the old CA removed
	// before the certificate it signed was replaced.
	ChainToCA bool
	// Logger gets a line per reload and per failed one; nil discards.
	Logger *slog.Logger
	// Registerer, if set, gets proglog_tls_reloads_total,
	// proglog_tls_reload_errors_total and
	// proglog_tls_cert_not_after_seconds.
	Registerer prometheus.Registerer
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Reloader holds a server's certificate, key and CA bundle and reloads
// them when their files change (Run polls them). The tls.Configs it hands
// out (ServerConfig, DialConfig) read the material in force at each
// handshake, so connections that are open keep the material they were
// made with and new ones get the new material; nothing is dropped.
//
// A reload reads all three files, and takes effect only when they make a
// valid whole: PEM that parses, a key that matches the certificate, a
// certificate within its validity period, a CA file with at least one
// certificate (and, with ChainToCA, a certificate that chains to it).
// Otherwise the previous material stays in force; the failure is logged
// and counted once per content of the files, and the next change is tried
// again.
//
// Changes are found by the files' content (a SHA-256 of the three), not
// their mtime: a Kubernetes Secret volume (cert-manager) swaps a symlink
// to a new directory, which an mtime of the linked path does not show,
// and an editor may keep the size and the second.
type Reloader struct {
	cfg ReloaderConfig
	now func() time.Time
	cur atomic.Pointer[material]

	reloads, errs prometheus.Counter
	notAfter      prometheus.Gauge

	mu      sync.Mutex        // guards seen and pending, and serializes Reload
	seen    [sha256.Size]byte // the content last loaded or refused
	pending [sha256.Size]byte // a content refused as not valid yet, tried again
}

// material is one consistent load of the files.
type material struct {
	cert *tls.Certificate // Leaf set
	cas  []*x509.Certificate
	pool *x509.CertPool // nil without a CA file
	// server is what ServerConfig's GetConfigForClient returns: the
	// certificate and the client CAs of this load.
	server *tls.Config
}

// NewReloader loads the files once; it fails if they do not make a valid
// whole, except that a certificate outside its validity period (or, with
// ChainToCA, not chaining to the CA) is only logged: a node must be able
// to start with what it has, and its peers will say what they think of it.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("%w: a Reloader needs a certificate and a key file", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cfg: cfg, now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	r.reloads = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "proglog", Subsystem: "tls", Name: "reloads_total",
		Help: "Reloads of the server certificate, key and CA files that took effect (the first load not counted).",
	})
	r.errs = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "proglog", Subsystem: "tls", Name: "reload_errors_total",
		Help: "Changes of the server certificate, key or CA files that were refused (the previous ones stay in force); once per content of the files.",
	})
	r.notAfter = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "proglog", Subsystem: "tls", Name: "cert_not_after_seconds",
		Help: "Expiry (NotAfter, Unix seconds) of the server certificate in force.",
	})
	sum, files, err := r.read()
	if err != nil {
		return nil, err
	}
	m, err := r.parse(files, false)
	if err != nil {
		return nil, err
	}
	r.seen = sum
	r.store(m)
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.reloads, r.errs, r.notAfter} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("pki: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Certificate returns the server certificate in force.
func (r *Reloader) Certificate() *x509.Certificate { return r.cur.Load().cert.Leaf }

// ServerConfig is the server side's configuration: the certificate in
// force (GetCertificate) and, through GetConfigForClient, the client CAs
// in force for each handshake. A client certificate is optional (a
// browser loading the dashboard comes without one) but one that is
// presented must verify, as with ServerTLSConfig; without a CA file none
// is asked for. It is a base to adjust and Clone, and so is what
// GetConfigForClient returns: a server that changes versions, cipher
// suites or protocols must apply them to that too (service.NewServer does).
func (r *Reloader) ServerConfig() *tls.Config {
	m := r.cur.Load()
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cur.Load().cert, nil },
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().server, nil
		},
		ClientAuth: m.server.ClientAuth,
		ClientCAs:  m.pool, // as at start; each handshake takes GetConfigForClient's
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// DialConfig is what a node dials its peers with: the certificate in
// force as its client certificate (GetClientCertificate), and a
// verification of the peer's certificate against the CA in force that
// makes the checks crypto/tls makes with RootCAs (VerifyConnection, with
// InsecureSkipVerify set so that the static RootCAs are not used).
//
// A VerifyConnection learns the name it verifies from the SNI extension,
// which never carries an IP address: clone the config for each address
// with WithServerName, or a dial by IP address fails.
//
// Certificates and RootCAs hold the material of the first load, for the
// callers that check a dial config has both; handshakes do not use them.
func (r *Reloader) DialConfig() *tls.Config {
	m := r.cur.Load()
	roots := m.pool
	if roots == nil {
		roots = x509.NewCertPool() // trusts no peer
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*m.cert},
		RootCAs:      roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.cur.Load().cert, nil
		},
		InsecureSkipVerify: true, // VerifyConnection verifies, against the CA in force
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, r.cur.Load().pool, r.now())
		},
		MinVersion: tls.VersionTLS12,
	}
}

// WithServerName returns a clone of cfg for a connection to serverName,
// as a tls.Dialer or net/http would make it by setting ServerName, and
// passes that name on to cfg's VerifyConnection (a DialConfig's) as
// ConnectionState.ServerName: otherwise it would see the SNI extension,
// which is empty for an IP address.
func WithServerName(cfg *tls.Config, serverName string) *tls.Config {
	c := cfg.Clone()
	c.ServerName = serverName
	if verify := cfg.VerifyConnection; verify != nil {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			cs.ServerName = serverName
			return verify(cs)
		}
	}
	return c
}

// verifyServer makes the checks crypto/tls makes of a server's
// certificate when it verifies (Config.RootCAs): the chain to roots, with
// the certificates the server sent after its leaf as intermediates, at
// the current time, for server authentication (an empty KeyUsages), and
// for cs.ServerName (a DNS name or an IP address, as x509 matches it). The
// error wraps as crypto/tls's does (tls.CertificateVerificationError
// around the x509 one), so callers can tell x509.HostnameError and
// x509.UnknownAuthorityError apart as they could before. (crypto/tls in
// FIPS 140 mode also drops chains of algorithms FIPS does not allow; that
// filter is not exported, and proglog's certificates are ECDSA P-256.)
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, now time.Time) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("pki: the server sent no certificate")
	}
	if cs.ServerName == "" {
		// crypto/tls refuses to dial with neither ServerName nor
		// InsecureSkipVerify; this is that refusal.
		return errors.New("pki: no server name to verify the server's certificate against (dial with pki.WithServerName)")
	}
	if roots == nil {
		roots = x509.NewCertPool()
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		CurrentTime:   now,
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	return nil
}

// Reload re-reads the files and puts their material in force if their
// content changed since the last look and makes a valid whole. It reports
// whether new material took effect. On error the previous material stays
// in force; the same content is not tried, nor reported, again (except a
// certificate not valid yet, tried until it is). Files that change while
// they are read are read again at the next look, without an error.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum, files, err := r.read()
	if sum == r.seen {
		return false, nil
	}
	if err == nil {
		var m *material
		if m, err = r.parse(files, true); err == nil {
			r.seen = sum
			r.store(m)
			r.reloads.Inc()
			return true, nil
		}
		if errors.Is(err, errNotYetValid) {
			// The same content may do in a while: tried again, counted once.
			if sum != r.pending {
				r.pending = sum
				r.errs.Inc()
			}
			return false, err
		}
	}
	if again, _, _ := r.read(); again != sum {
		// The files changed while they were read (a Secret volume's
		// symlink swap between two of them): what was read is no whole,
		// so it is neither refused nor counted; the next look reads them
		// again.
		return false, nil
	}
	r.seen = sum
	r.errs.Inc()
	return false, err
}

// Run checks the files every interval until ctx is done, putting each
// valid change in force and logging (once per content) each one it
// refuses.
func (r *Reloader) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string // a certificate not valid yet is reported once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := r.Reload()
		switch {
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				r.cfg.Logger.Error("tls reload failed; keeping the previous certificate and CA", r.attrs(err)...)
			}
		case changed:
			lastErr = ""
			r.cfg.Logger.Info("tls reloaded", r.attrs(nil)...)
		}
	}
}

// attrs describe the files and the material in force (and err).
func (r *Reloader) attrs(err error) []any {
	m := r.cur.Load()
	a := []any{"cert", r.cfg.CertFile, "key", r.cfg.KeyFile}
	if r.cfg.CAFile != "" {
		a = append(a, "ca", r.cfg.CAFile)
	}
	if err != nil {
		a = append(a, "err", err)
	}
	a = append(a, "serial", fmt.Sprintf("%x", m.cert.Leaf.SerialNumber), "not_after", m.cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "cas", subjects(m.cas))
	return a
}

// store puts m in force.
func (r *Reloader) store(m *material) {
	r.cur.Store(m)
	r.notAfter.Set(float64(m.cert.Leaf.NotAfter.Unix()))
}

// fileContents are the three files as read.
type fileContents struct{ cert, key, ca []byte }

// read reads the files and sums their content; a file that cannot be read
// enters the sum by its error, so that the same failure counts once. The
// error is the first file's that could not be read.
func (r *Reloader) read() (sum [sha256.Size]byte, files fileContents, err error) {
	h := sha256.New()
	get := func(path string) []byte {
		if path == "" {
			h.Write([]byte{0})
			return nil
		}
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			if err == nil {
				err = fmt.Errorf("pki: %w", rerr)
			}
			h.Write([]byte{1})
			h.Write([]byte(rerr.Error()))
			return nil
		}
		var n [9]byte
		n[0] = 2
		binary.BigEndian.PutUint64(n[1:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
		return data
	}
	files = fileContents{cert: get(r.cfg.CertFile), key: get(r.cfg.KeyFile), ca: get(r.cfg.CAFile)}
	h.Sum(sum[:0])
	return sum, files, err
}

// errNotYetValid marks the one failure that time may cure.
var errNotYetValid = fmt.Errorf("%w: not valid until", ErrExpired)

// parse makes material of the files. strict refuses what NewReloader only
// logs: a certificate outside its validity period or, with ChainToCA, not
// chaining to the CA.
func (r *Reloader) parse(files fileContents, strict bool) (*material, error) {
	c := r.cfg
	if _, err := parseCerts(files.cert); err != nil {
		return nil, fmt.Errorf("%s: %w", c.CertFile, err)
	}
	key, err := parseKey(files.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.KeyFile, err)
	}
	pair, err := tls.X509KeyPair(files.cert, files.key)
	if err != nil {
		// parseCerts and parseKey passed: the key is not the certificate's.
		if cert, perr := parseCert(files.cert); perr == nil && matchKey(cert, key) != nil {
			err = ErrKeyMismatch
		}
		return nil, fmt.Errorf("%s and %s: %w", c.CertFile, c.KeyFile, err)
	}
	if pair.Leaf == nil { // GODEBUG x509keypairleaf=0
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", c.CertFile, err)
		}
	}
	m := &material{cert: &pair}
	if c.CAFile != "" {
		if m.cas, err = parseCerts(files.ca); err != nil {
			return nil, fmt.Errorf("%s: %w", c.CAFile, err)
		}
		m.pool = x509.NewCertPool()
		for _, ca := range m.cas {
			m.pool.AddCert(ca)
		}
	}
	if err := r.check(m); err != nil {
		if strict {
			return nil, err
		}
		c.Logger.Warn("serving a certificate peers may refuse", "err", err)
	}
	m.server = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.NoClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if m.pool != nil {
		m.server.ClientCAs = m.pool
		m.server.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return m, nil
}

// check refuses a certificate outside its validity period and, with
// ChainToCA, one that does not chain to the CA file for both server and
// client authentication (a node presents it as both).
func (r *Reloader) check(m *material) error {
	leaf, now := m.cert.Leaf, r.now()
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%s: %w: expired at %s", r.cfg.CertFile, ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%s: %w %s", r.cfg.CertFile, errNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if !r.cfg.ChainToCA {
		return nil
	}
	inter := x509.NewCertPool()
	for _, der := range m.cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	roots := m.pool
	if roots == nil {
		roots = x509.NewCertPool()
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("%s: %w %s (%v): issue it from a CA in the file before removing its own", r.cfg.CertFile, ErrNotChained, r.cfg.CAFile, err)
		}
	}
	return nil
}

// subjects lists the CAs' common names, for logs.
func subjects(cas []*x509.Certificate) string {
	var b strings.Builder
	for i, c := range cas {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.Subject.CommonName)
	}
	return b.String()
}
