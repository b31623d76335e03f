package pkitest_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// get makes one HTTPS request with clientCfg to a server that runs with
// serverCfg, as proglog's do, and returns the Common Name the server verified
// ("" for a caller without a certificate).
func get(t *testing.T, serverCfg, clientCfg *tls.Config) (string, error) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if chains := r.TLS.VerifiedChains; len(chains) > 0 {
			fmt.Fprint(w, chains[0][0].Subject.CommonName)
		}
	}))
	srv.TLS = serverCfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: clientCfg}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestHandshake(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	serverCert, serverKey := ca.Issue(t, "node", true)
	serverCfg, err := pki.ServerTLSConfig(serverCert, serverKey, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	foreignCfg := ca.TLSConfig(t, serverCert, serverKey)
	foreignCfg.RootCAs = other.Pool
	aliceCert, aliceKey := ca.Issue(t, "alice", false)
	peerCert, peerKey := ca.Issue(t, "peer", true)
	malloryCert, malloryKey := other.Issue(t, "mallory", false)

	tests := []struct {
		name   string
		client *tls.Config
		wantCN string
		fail   bool
	}{
		{"client certificate", ca.TLSConfig(t, aliceCert, aliceKey), "alice", false},
		{"server certificate as a peer's", ca.TLSConfig(t, peerCert, peerKey), "peer", false},
		{"no certificate", &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}, "", false},
		{"certificate of another CA", ca.TLSConfig(t, malloryCert, malloryKey), "", true},
		{"server of another CA", foreignCfg, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cn, err := get(t, serverCfg, tt.client)
			if (err != nil) != tt.fail {
				t.Fatalf("GET: %v, want failure %v", err, tt.fail)
			}
			if cn != tt.wantCN {
				t.Errorf("server verified %q, want %q", cn, tt.wantCN)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	ca := pkitest.NewCA(t)
	certFile, keyFile := ca.Issue(t, "n1", true)
	if want := filepath.Join(ca.Dir, "n1.pem"); certFile != want {
		t.Errorf("cert file %s, want %s", certFile, want)
	}
	if want := filepath.Join(ca.Dir, "n1-key.pem"); keyFile != want {
		t.Errorf("key file %s, want %s", keyFile, want)
	}
	for _, f := range []string{ca.CAFile, certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	// What pki loads from CAFile verifies the issued certificate.
	client, err := pki.ClientTLSConfig(ca.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	first := leaf(t, certFile, keyFile)
	if _, err := first.Verify(x509.VerifyOptions{Roots: client.RootCAs}); err != nil {
		t.Fatalf("issued certificate does not verify against CAFile: %v", err)
	}
	if len(first.IPAddresses) != 1 || !first.IPAddresses[0].IsLoopback() {
		t.Errorf("server certificate for %v, want 127.0.0.1", first.IPAddresses)
	}

	// Issuing a name again replaces its files, as a restarted node does.
	ca.Issue(t, "n1", true)
	if again := leaf(t, certFile, keyFile); again.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("second Issue left the first certificate in place")
	}
}

func leaf(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

// fatalTB records a Fatal and stops its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestIssueRejectsNames(t *testing.T) {
	ca := pkitest.NewCA(t)
	for _, name := range []string{"", "../n1", "a/b"} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			tb := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				ca.Issue(tb, name, true)
			}()
			<-done
			if tb.msg == "" {
				t.Fatalf("Issue(%q) did not fail the test", name)
			}
			if entries, err := os.ReadDir(ca.Dir); err != nil || len(entries) != 1 {
				t.Errorf("Dir holds %d entries (%v), want only the CA", len(entries), err)
			}
		})
	}
}
