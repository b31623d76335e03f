package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// serveLog serves the log in dir on addr (127.0.0.1:0 for any port) until
// the returned stop is called.
func serveLog(t *testing.T, dir, addr string) (string, func()) {
	t.Helper()
	p, err := acl.Parse(strings.NewReader("p, anonymous, *, *\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := logstore.DefaultConfig()
	cfg.Sync = logstore.SyncNever
	l, err := logstore.Open(filepath.Join(dir, "log"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{Log: l, Authorizer: p, NodeID: "n1", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := service.NewServer(service.ServerConfig{Handler: svc.Handler()})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		l.Close()
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func TestFollowReconnectsAfterServerRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := serveLog(t, dir, "127.0.0.1:0")
	cli := func(args ...string) {
		t.Helper()
		var out, errs syncBuffer
		e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errs, getenv: func(string) string { return "" }}
		if code := run(t.Context(), append(args, "--insecure", "--addr", addr), e); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs.String())
		}
	}
	cli("produce", "-q", "first")

	f := startFollow(t, addr)
	f.waitOutput("first\n")

	stop() // ends the tail: the server is shutting down
	_, stop = serveLog(t, dir, addr)
	defer stop()
	cli("produce", "-q", "second", "third")
	f.waitOutput("first\nsecond\nthird\n") // resumed after "first": nothing skipped or repeated
	if !strings.Contains(f.errs.String(), "reconnecting from offset 1") {
		t.Errorf("stderr %q does not say it reconnects from offset 1", f.errs.String())
	}
	f.cancel()
	if code := <-f.done; code != 0 {
		t.Fatalf("interrupted follow: exit %d, stderr %q; want 0", code, f.errs.String())
	}
}
