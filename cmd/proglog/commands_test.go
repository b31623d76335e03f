package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// testNode is a real service over a real logstore, served as plaintext
// HTTP/2 on 127.0.0.1 (what --insecure gives), so the client commands run
// in-process against the real thing.
type testNode struct {
	addr string
	log  *logstore.Log
}

func startTestNode(t *testing.T, policy string) *testNode {
	t.Helper()
	p, err := acl.Parse(strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	cfg := logstore.DefaultConfig()
	cfg.Sync = logstore.SyncNever // the fast tier tests the CLI, not fsync
	l, err := logstore.Open(filepath.Join(t.TempDir(), "log"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{Log: l, Authorizer: p, NodeID: "n1", Version: "test", MaxRecordBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := service.NewServer(service.ServerConfig{Handler: svc.Handler()})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		l.Close()
	})
	return &testNode{addr: ln.Addr().String(), log: l}
}

// cli runs one command line in-process against the node.
func (n *testNode) cli(ctx context.Context, stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(ctx, append(args, "--insecure", "--addr", n.addr), e)
	return out.String(), errb.String(), code
}

func TestCommandsAgainstRealService(t *testing.T) {
	n := startTestNode(t, "p, anonymous, *, *\n")
	ctx := t.Context()
	var stdin strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&stdin, "rec-%d\n", i)
	}
	steps := []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantOut   string // exact, unless prefix/lines below
		wantLines int    // > 0: count lines instead
		contains  string // with wantLines: a fragment stdout must hold
		wantErr   string
	}{
		{name: "produce args", args: []string{"produce", "a", "b"}, wantOut: "0\n1\n"},
		{name: "produce stdin in batches", stdin: stdin.String(), args: []string{"produce", "--batch", "33", "--protocol", "connect"}, wantLines: 1000},
		{name: "produce quiet", args: []string{"produce", "-q", "c"}, wantOut: ""},
		{name: "produce nothing", args: []string{"produce"}, wantOut: ""},
		{name: "consume all", args: []string{"consume", "--count", "3"}, wantOut: "a\nb\nrec-0\n"},
		{name: "consume range grpcweb", args: []string{"consume", "--from", "500", "--to", "502", "--protocol", "grpcweb"}, wantOut: "rec-498\nrec-499\n"},
		{name: "consume to the end", args: []string{"consume", "--from", "1000"}, wantOut: "rec-998\nrec-999\nc\n"},
		{name: "consume past the end", args: []string{"consume", "--from", "5000"}, wantOut: ""},
		{name: "consume last two", args: []string{"consume", "--from-end", "--from", "2", "--format", "hex"}, wantOut: "1001\t7265632d393939\n1002\t63\n"},
		{name: "consume small batches", args: []string{"consume", "--max-batch", "1", "--from", "1", "--count", "2", "--format", "json"},
			wantOut: `{"offset":1,"value":"Yg==","text":"b"}` + "\n" + `{"offset":2,"value":"cmVjLTA=","text":"rec-0"}` + "\n"},
		{name: "stats", args: []string{"stats"}, wantLines: 7},
		{name: "whoami", args: []string{"whoami"}, wantOut: "subject:       anonymous\nauthenticated: false\nactions:       produce, consume, admin\n"},
		{name: "oversize record mid-stream", stdin: "ok1\nok2\n" + strings.Repeat("x", 2000) + "\nlost\n", args: []string{"produce", "--batch", "1"},
			wantCode: 1, wantOut: "1003\n1004\n", wantErr: "invalid_argument"},
		{name: "bench unary", args: []string{"bench", "produce", "--mode", "unary", "--records", "50", "--clients", "2"}, wantLines: 3},
		{name: "bench batch", args: []string{"bench", "produce", "--mode", "batch", "--records", "500", "--batch", "50"}, wantLines: 3},
		{name: "bench stream", args: []string{"bench", "produce", "--mode", "stream", "--records", "1000", "--batch", "10", "--window", "4", "--protocol", "connect"}, wantLines: 3, contains: "\n  1000 records, "},
		{name: "bench consume", args: []string{"bench", "consume", "--records", "2000", "--clients", "2", "--batch", "300"}, wantLines: 3, contains: "\n  2000 records, "},
		{name: "bench consume too many", args: []string{"bench", "consume", "--records", "1000000"}, wantCode: 1, wantErr: "run proglog bench produce first"},
		{name: "bench oversize", args: []string{"bench", "produce", "--size", "4KiB", "--records", "2"}, wantCode: 1, wantErr: "invalid_argument"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, errs, code := n.cli(ctx, s.stdin, s.args...)
			if code != s.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, s.wantCode, errs)
			}
			if s.wantLines > 0 {
				if got := strings.Count(out, "\n"); got != s.wantLines || !strings.Contains(out, s.contains) {
					t.Fatalf("%d lines, want %d with %q:\n%s", got, s.wantLines, s.contains, out)
				}
			} else if out != s.wantOut {
				t.Fatalf("stdout %q, want %q", out, s.wantOut)
			}
			if s.wantErr != "" && (!strings.Contains(errs, s.wantErr) || strings.Count(errs, "\n") != 1) {
				t.Fatalf("stderr %q, want one line with %q", errs, s.wantErr)
			}
		})
	}
	if _, next := n.log.Bounds(); next != 1005+50+500+1000 {
		t.Fatalf("log ends at %d", next)
	}
}

func TestDeniedExitCode(t *testing.T) {
	n := startTestNode(t, "p, anonymous, log, consume\n")
	for _, args := range [][]string{{"produce", "x"}, {"bench", "produce", "--records", "1"}} {
		_, errs, code := n.cli(t.Context(), "", args...)
		if code != exitDenied || !strings.Contains(errs, `may not "produce"`) {
			t.Fatalf("%v: exit %d, stderr %q; want %d", args, code, errs, exitDenied)
		}
	}
	if _, errs, code := n.cli(t.Context(), "", "consume"); code != 0 {
		t.Fatalf("consume an empty log: exit %d, %s", code, errs)
	}
}

// syncBuffer is an output that a running command and the test share.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFollowStopsCleanlyOnInterrupt(t *testing.T) {
	n := startTestNode(t, "p, anonymous, *, *\n")
	if _, errs, code := n.cli(t.Context(), "", "produce", "first"); code != 0 {
		t.Fatal(errs)
	}
	f := startFollow(t, n.addr)
	f.waitOutput("first\n")
	if _, e, code := n.cli(t.Context(), "", "produce", "-q", "live"); code != 0 {
		t.Fatal(e)
	}
	f.waitOutput("first\nlive\n") // arrives live, without polling
	f.cancel()
	if code := <-f.done; code != 0 {
		t.Fatalf("interrupted follow: exit %d, stderr %q; want 0", code, f.errs.String())
	}
}

// follow is an in-process `consume --follow` against addr.
type follow struct {
	t         *testing.T
	out, errs syncBuffer
	done      chan int // its exit code
	cancel    context.CancelFunc
}

func startFollow(t *testing.T, addr string) *follow {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	f := &follow{t: t, done: make(chan int, 1), cancel: cancel}
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &f.out, stderr: &f.errs, getenv: func(string) string { return "" }}
		f.done <- run(ctx, []string{"consume", "--follow", "--insecure", "--addr", addr}, e)
	}()
	return f
}

// waitOutput waits until the tail has printed exactly want.
func (f *follow) waitOutput(want string) {
	f.t.Helper()
	for range 2000 {
		if f.out.String() == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("follow printed %q, want %q (stderr %q)", f.out.String(), want, f.errs.String())
}
