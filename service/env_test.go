package service_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The identities every test server knows. "stranger" holds a valid
// certificate but no rule; "impostor" holds a certificate named root from
// another CA.
const (
	idRoot     = "root"
	idReader   = "reader"
	idStranger = "stranger"
	idOrders   = "orders-app" // rules on topics orders.* only, where a test's policy gives them
	idNone     = ""           // no client certificate
	idImpostor = "impostor"
)

const testPolicy = `
# the quickstart rule, and a consume-only subject
p, root, *, *
p, reader, *, consume
`

type envOptions struct {
	insecure  bool
	policy    string // default testPolicy
	config    func(*service.Config)
	server    func(*service.ServerConfig)
	logConfig func(*logstore.Config)
	listener  func(net.Listener) net.Listener // wraps the TCP listener
}

// env is a real server: logstore on disk, TLS on a loopback socket.
type env struct {
	t        testing.TB
	log      *logstore.Log
	svc      *service.Service
	srv      *service.Server
	reg      *prometheus.Registry
	url      string
	addr     string
	certDir  string
	served   chan error
	shutdown bool
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	lcfg := logstore.DefaultConfig()
	if opts.logConfig != nil {
		opts.logConfig(&lcfg)
	}
	log, err := logstore.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.policy == "" {
		opts.policy = testPolicy
	}
	policy, err := parsePolicy(opts.policy)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := service.Config{
		Log:        log,
		Authorizer: policy,
		NodeID:     "node-1",
		Version:    "test",
		RPCAddr:    ln.Addr().String(),
		Registerer: reg,
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.listener != nil {
		ln = opts.listener(ln)
	}
	e := &env{t: t, log: log, svc: svc, reg: reg, addr: ln.Addr().String(), certDir: filepath.Join(dir, "certs"), served: make(chan error, 1)}
	scfg := service.ServerConfig{Handler: svc.Handler(), Registerer: reg}
	if opts.insecure {
		e.url = "http://" + ln.Addr().String()
	} else {
		e.url = "https://" + ln.Addr().String()
		e.makeCerts()
		scfg.TLS, err = pki.ServerTLSConfig(e.cert("server"), e.cert("server-key"), e.cert("ca"))
		if err != nil {
			t.Fatal(err)
		}
	}
	if opts.server != nil {
		opts.server(&scfg)
	}
	e.srv = service.NewServer(scfg)
	go func() { e.served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.stop()
		if err := log.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func (e *env) cert(name string) string { return filepath.Join(e.certDir, name+".pem") }

func (e *env) makeCerts() {
	t := e.t
	t.Helper()
	if err := os.MkdirAll(e.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(e.cert(name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	write("ca", ca.CertPEM)
	certPEM, keyPEM, err := ca.IssueServer("server", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	write("server", certPEM)
	write("server-key", keyPEM)
	for _, id := range []string{idRoot, idReader, idStranger, idOrders} {
		certPEM, keyPEM, err := ca.IssueClient(id)
		if err != nil {
			t.Fatal(err)
		}
		write(id, certPEM)
		write(id+"-key", keyPEM)
	}
	other, err := pki.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err = other.IssueClient(idRoot)
	if err != nil {
		t.Fatal(err)
	}
	write(idImpostor, certPEM)
	write(idImpostor+"-key", keyPEM)
}

// stop shuts the server down (once) and checks that Serve returned.
func (e *env) stop() {
	if e.shutdown {
		return
	}
	e.shutdown = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	if err := <-e.served; !errors.Is(err, http.ErrServerClosed) {
		e.t.Errorf("Serve returned %v", err)
	}
}

// httpClient connects as id over HTTP/2 (or HTTP/1.1 when http1 is set).
func (e *env) httpClient(id string, http1 bool, h2 *http.HTTP2Config) *http.Client {
	t := e.t
	t.Helper()
	tr := &http.Transport{HTTP2: h2, Protocols: new(http.Protocols)}
	if strings.HasPrefix(e.url, "http://") {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		var (
			cfg *tls.Config
			err error
		)
		if id == idNone {
			cfg, err = pki.ClientTLSConfig(e.cert("ca"), "", "")
		} else {
			cfg, err = pki.ClientTLSConfig(e.cert("ca"), e.cert(id), e.cert(id+"-key"))
		}
		if err != nil {
			t.Fatal(err)
		}
		if id == idImpostor {
			// Present the foreign certificate even though it does not chain
			// to the CAs the server names (Go's client would withhold it).
			pair := cfg.Certificates[0]
			cfg.Certificates = nil
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		if http1 {
			cfg.NextProtos = []string{"http/1.1"}
			tr.Protocols.SetHTTP1(true)
		} else {
			tr.Protocols.SetHTTP2(true)
		}
		tr.TLSClientConfig = cfg
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func (e *env) client(id string, opts ...connect.ClientOption) logv1connect.LogServiceClient {
	e.t.Helper()
	return logv1connect.NewLogServiceClient(e.httpClient(id, false, nil), e.url, opts...)
}

// protocols are the three wire protocols every RPC must speak.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
}

func codeOf(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// waitFor polls cond for up to 10 seconds; for state that settles after
// an asynchronous event (a stream ended by the server).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// testAuthorizer stands in for the acl package's policy (until it takes
// topics): lines "p, subject, object, action" where subject is a name,
// "anonymous" or "*" (any authenticated subject), object "*" (every topic
// and the cluster), a topic, or a topic prefix ending in "*" ("orders.*"),
// and action "produce", "consume", "admin" or "*".
type testAuthorizer struct{ rules []testRule }

type testRule struct{ subject, object, action string }

var _ service.Authorizer = (*testAuthorizer)(nil)

func parsePolicy(text string) (*testAuthorizer, error) {
	a := &testAuthorizer{}
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, ",")
		for k := range f {
			f[k] = strings.TrimSpace(f[k])
		}
		if len(f) != 4 || f[0] != "p" {
			return nil, fmt.Errorf("policy line %d: %q", i+1, line)
		}
		a.rules = append(a.rules, testRule{subject: f[1], object: f[2], action: f[3]})
	}
	return a, nil
}

func (r testRule) matches(subject, action string) bool {
	return (r.subject == subject || r.subject == "*" && subject != service.Anonymous) && (r.action == "*" || r.action == action)
}

func (r testRule) on(topic string) bool {
	if topic == "" {
		topic = "default"
	}
	if prefix, ok := strings.CutSuffix(r.object, "*"); ok {
		return strings.HasPrefix(topic, prefix)
	}
	return r.object == topic
}

func (a *testAuthorizer) Allowed(subject, topic, action string) bool {
	return slices.ContainsFunc(a.rules, func(r testRule) bool { return r.matches(subject, action) && r.on(topic) })
}

func (a *testAuthorizer) AllowedAny(subject, action string) bool {
	return slices.ContainsFunc(a.rules, func(r testRule) bool { return r.matches(subject, action) })
}

func (a *testAuthorizer) AllowedCluster(subject, action string) bool {
	return slices.ContainsFunc(a.rules, func(r testRule) bool { return r.matches(subject, action) && r.object == "*" })
}

var testActions = []string{service.ActionProduce, service.ActionConsume, service.ActionAdmin}

func (a *testAuthorizer) Actions(subject string) []string {
	out := []string{}
	for _, action := range testActions {
		if a.AllowedAny(subject, action) {
			out = append(out, action)
		}
	}
	return out
}

func (a *testAuthorizer) ActionsOn(subject, topic string) []string {
	out := []string{}
	for _, action := range testActions {
		if a.Allowed(subject, topic, action) {
			out = append(out, action)
		}
	}
	return out
}
