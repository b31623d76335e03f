package node_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	proglog "github.com/proglog/proglog/client"
	"github.com/proglog/proglog/cluster/clustertest"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/pki/pkitest"
)

// metric is the value of the metric name in reg (a counter or gauge, the
// first series).
func metric(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// handshakes records the serial of the server certificate of every TLS
// handshake a client config makes.
type handshakes struct {
	mu      sync.Mutex // guards serials
	serials []*big.Int
}

func (h *handshakes) watch(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.serials = append(h.serials, cs.PeerCertificates[0].SerialNumber)
		return nil
	}
	return cfg
}

func (h *handshakes) list() []*big.Int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.serials)
}

// The issue's test: the server certificate is renewed while a client
// tails the log and produces over a stream. Both go on, on the
// connection they had (no new handshake, no resumed tail), and a new
// connection gets the renewed certificate.
func TestRenewalMidStream(t *testing.T) {
	id := newIdentity(t)
	cfg := id.config(t, t.TempDir())
	cfg.TLSPoll = 20 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Gatherer = reg, reg
	n := start(t, cfg)
	first := serialOf(t, id.cert)

	var seen handshakes
	c, err := proglog.New(t.Context(), proglog.Config{Addrs: []string{n.Addr()}, TLS: seen.watch(id.root)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	records := make(chan string, 16)
	resumed := make(chan proglog.Resume, 16)
	tailDone := make(chan error, 1)
	go func() {
		tailDone <- c.Tail(t.Context(), 0, func(r *logv1.Record) error {
			records <- string(r.GetValue())
			return nil
		}, proglog.OnResume(func(r proglog.Resume) { resumed <- r }))
	}()
	p, err := c.NewProducer(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	send := func(v string) {
		t.Helper()
		ack, err := p.Send(t.Context(), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ack.Wait(t.Context()); err != nil {
			t.Fatalf("produce %q: %v", v, err)
		}
	}
	receive := func(want string) {
		t.Helper()
		select {
		case got := <-records:
			if got != want {
				t.Fatalf("the tail read %q, want %q", got, want)
			}
		case r := <-resumed:
			t.Fatalf("the tail broke and resumes: %+v", r)
		case err := <-tailDone:
			t.Fatalf("the tail ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("the tail did not read %q", want)
		}
	}
	send("before")
	receive("before")
	before := seen.list()
	for _, s := range before {
		if s.Cmp(first) != 0 {
			t.Fatalf("handshake with serial %v, want %v", s, first)
		}
	}

	// The renewal: a new key, serial and expiry, written over the files.
	renewedUntil := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	id.ca.IssueValid(t, "node", true, time.Now().Add(-time.Minute), renewedUntil)
	renewed := serialOf(t, id.cert)
	waitFor(t, "the reload", func() bool {
		return metric(t, reg, "proglog_tls_cert_not_after_seconds") == float64(renewedUntil.Unix())
	})
	if got := metric(t, reg, "proglog_tls_reloads_total"); got < 1 {
		t.Fatalf("reloads_total = %v after the reload", got)
	}

	send("after")
	receive("after")
	if got := seen.list(); len(got) != len(before) {
		t.Fatalf("the client handshook again (%d handshakes, %d before): the streams did not keep their connection", len(got), len(before))
	}

	// A new connection sees the renewed certificate.
	rcfg := id.root.Clone()
	rcfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", n.Addr(), rcfg)
	if err != nil {
		t.Fatal(err)
	}
	got := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if got.SerialNumber.Cmp(renewed) != 0 || !got.NotAfter.Equal(renewedUntil) {
		t.Fatalf("a new connection got serial %v until %v, want %v until %v", got.SerialNumber, got.NotAfter, renewed, renewedUntil)
	}
	c2, _, _ := client(t, n.Addr(), id.root)
	if got := consume(t, c2, 0, 2); !slices.Equal(got, []string{"before", "after"}) {
		t.Fatalf("a new client reads %q", got)
	}
}

func serialOf(t *testing.T, certFile string) *big.Int {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFileOf(certFile))
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber
}

// keyFileOf is pkitest's key file of certFile.
func keyFileOf(certFile string) string {
	return certFile[:len(certFile)-len(".pem")] + "-key.pem"
}

// secretVolume is the layout a Kubernetes Secret volume (cert-manager's
// tls.crt, tls.key and ca.crt) has: each file a symlink through ..data,
// a symlink to a directory of the version, swapped by a rename.
type secretVolume struct {
	dir     string
	version int
}

func newSecretVolume(t *testing.T, cert, key, ca []byte) *secretVolume {
	t.Helper()
	v := &secretVolume{dir: t.TempDir()}
	v.update(t, cert, key, ca)
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// update writes a new version of the files and swaps ..data to it; nil
// keeps a file as it is.
func (v *secretVolume) update(t *testing.T, cert, key, ca []byte) {
	t.Helper()
	old := filepath.Join(v.dir, "..data")
	files := map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca}
	for name, data := range files {
		if data == nil {
			var err error
			if files[name], err = os.ReadFile(filepath.Join(old, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	v.version++
	ver := fmt.Sprintf("..v%d", v.version)
	if err := os.Mkdir(filepath.Join(v.dir, ver), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ver, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ver, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, old); err != nil {
		t.Fatal(err)
	}
}

func (v *secretVolume) path(name string) string { return filepath.Join(v.dir, name) }

// cutListener can close every connection it accepted, so that the node's
// peers and clients must handshake again.
type cutListener struct {
	net.Listener
	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func (l *cutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes the connections accepted so far and says how many.
func (l *cutListener) cut() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	n := len(l.conns)
	l.conns = nil
	return n
}

// accepted says how many connections were accepted since the last cut.
func (l *cutListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// A CA rotation across a cluster, as the README describes it: every
// node's CA file gains the new CA, each node's certificate is reissued by
// the new CA in turn, then the old CA leaves the CA files. The files are
// Kubernetes Secret volumes, swapped by symlink. After each step every
// connection to every node is cut, so Raft, forwarding and clients
// handshake again with what is in force; records appended then through
// every node reach every node. At the end a node that knows only the new
// CA joins.
func TestCARotationAcrossCluster(t *testing.T) {
	oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t)
	bothPEM := append(slices.Clone(oldCA.CertPEM), newCA.CertPEM...)
	both := x509.NewCertPool()
	both.AddCert(oldCA.Cert)
	both.AddCert(newCA.Cert)
	rootOf := func(ca *pkitest.CA) *tls.Config {
		cert, key := ca.Issue(t, "root", false)
		cfg := ca.TLSConfig(t, cert, key)
		cfg.RootCAs = both // clients trust both CAs during the rotation
		return cfg
	}
	rootOld, rootNew := rootOf(oldCA), rootOf(newCA)
	aclFile := filepath.Join(t.TempDir(), "acl.csv")
	writeFile(t, aclFile, "p, root, *, *\n")
	read := func(path string) []byte {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	issue := func(ca *pkitest.CA, name string) (cert, key []byte) {
		c, k := ca.Issue(t, name, true)
		return read(c), read(k)
	}

	type member struct {
		*running
		name          string
		vol           *secretVolume
		ln            *cutListener
		reg           *prometheus.Registry
		reloadsWanted int // the changes of its files so far
	}
	var (
		members []*member
		seed    string
	)
	startMember := func(name string, ca *pkitest.CA, caPEM []byte) *member {
		t.Helper()
		cert, key := issue(ca, name)
		vol := newSecretVolume(t, cert, key, caPEM)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &member{name: name, vol: vol, ln: &cutListener{Listener: ln}, reg: prometheus.NewRegistry()}
		cfg := gossip(t, node.Config{
			DataDir: t.TempDir(), Listener: m.ln, NodeID: name, Version: "test",
			TLSCert: vol.path("tls.crt"), TLSKey: vol.path("tls.key"), TLSCA: vol.path("ca.crt"), ACL: aclFile,
			TLSPoll:    20 * time.Millisecond,
			Registerer: m.reg, Gatherer: m.reg,
			Logger: clustertest.Logger(t),
		})
		if seed == "" {
			cfg.Cluster.Bootstrap = true
			seed = cfg.Cluster.GossipAddr
		} else {
			cfg.Cluster.Join = []string{seed}
		}
		m.running = start(t, cfg)
		waitFor(t, name+" to gossip", func() bool {
			conn, err := net.Dial("tcp", cfg.Cluster.GossipAddr)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
		members = append(members, m)
		return m
	}
	startMember("n1", oldCA, oldCA.CertPEM)
	startMember("n2", oldCA, oldCA.CertPEM)
	c1, _, _ := client(t, members[0].Addr(), rootOld)
	waitFor(t, "two voters", func() bool { return len(servers(t, c1)) == 2 })

	var values []string
	// step appends a record once every connection has been cut and checks
	// that every member has all records.
	step := func(name string, root *tls.Config) {
		t.Helper()
		for _, m := range members {
			waitFor(t, name+": "+m.name+" reloads", func() bool {
				return metric(t, m.reg, "proglog_tls_reloads_total") >= float64(m.reloadsWanted)
			})
			if got := metric(t, m.reg, "proglog_tls_reload_errors_total"); got != 0 {
				t.Fatalf("%s: %s refused %v reloads", name, m.name, got)
			}
		}
		for _, m := range members {
			m.ln.cut()
		}
		// Through every member: a follower forwards to the leader.
		for _, m := range members {
			v := fmt.Sprintf("after %s, through %s", name, m.name)
			c, _, _ := client(t, m.Addr(), root)
			waitFor(t, name+": a produce through "+m.name, func() bool {
				_, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(v)}})
				if err != nil {
					t.Logf("%s: produce through %s: %v", name, m.name, err)
				}
				return err == nil
			})
			values = append(values, v)
		}
		for _, m := range members {
			c, _, _ := client(t, m.Addr(), root)
			if got := consume(t, c, 0, len(values)); !slices.Equal(got, values) {
				t.Fatalf("%s: %s holds %q, want %q", name, m.name, got, values)
			}
			t.Logf("%s: %s holds every record; %d connections since the cut", name, m.name, m.ln.accepted())
		}
	}
	step("start", rootOld)

	// 1. Every CA file holds the old and the new CA.
	for _, m := range members {
		m.vol.update(t, nil, nil, bothPEM)
		m.reloadsWanted++
	}
	step("the new CA added", rootOld)

	// 2. Each node's certificate is reissued by the new CA, one at a time.
	for _, m := range members {
		cert, key := issue(newCA, m.name)
		m.vol.update(t, cert, key, nil)
		m.reloadsWanted++
		step(m.name+" reissued", rootNew)
	}

	// 3. The old CA leaves every CA file.
	for _, m := range members {
		m.vol.update(t, nil, nil, newCA.CertPEM)
		m.reloadsWanted++
	}
	step("the old CA removed", rootNew)
	// Old-CA client certificates are refused on new connections now.
	cOld, _, _ := client(t, members[0].Addr(), rootOld)
	if _, err := cOld.Produce(t.Context(), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("refused")}}); err == nil {
		t.Fatal("a client certificate of the removed CA was accepted")
	}

	// A node that knows only the new CA joins: the leader verifies it and
	// opens Raft connections to it with what it reloaded.
	startMember("n3", newCA, newCA.CertPEM)
	cn, _, _ := client(t, members[0].Addr(), rootNew)
	waitFor(t, "three voters", func() bool { return len(servers(t, cn)) == 3 })
	step("n3 joined", rootNew)
}
