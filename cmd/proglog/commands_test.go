package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/internal/syncbuf"
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
			wantLines: 2, contains: `{"offset":1,"value":"Yg==","text":"b","time":"20`},
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

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = syncbuf.Buffer

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

func startFollow(t *testing.T, addr string, args ...string) *follow {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	f := &follow{t: t, done: make(chan int, 1), cancel: cancel}
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &f.out, stderr: &f.errs, getenv: func(string) string { return "" }}
		f.done <- run(ctx, append([]string{"consume", "--follow", "--insecure", "--addr", addr}, args...), e)
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

// Mistakes in the new flags are usage errors (exit 2) found before any
// connection: nothing listens at the address.
func TestRecordAndTimeUsageErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"key and separator", []string{"produce", "--record-key", "k", "--key-separator", ":", "x"}, "--record-key and --key-separator exclude each other"},
		{"empty separator", []string{"produce", "--key-separator", "", "x"}, "--key-separator must not be empty"},
		{"header without =", []string{"produce", "--header", "a", "x"}, `--header "a": want key=value`},
		{"empty header key", []string{"produce", "--header", "=v", "x"}, "empty key"},
		{"long header key", []string{"produce", "--header", strings.Repeat("k", 257) + "=v", "x"}, "more than 256"},
		{"bad time", []string{"consume", "--from-time", "10:00"}, "want an RFC 3339 time"},
		{"bad since", []string{"consume", "--since", "ten minutes"}, "invalid argument"},
		{"time and since", []string{"consume", "--from-time", "2026-11-30T10:00:00Z", "--since", "1m"}, "exclude each other"},
		{"time and from", []string{"consume", "--from-time", "2026-11-30T10:00:00Z", "--from", "3"}, "--from-time excludes --from and --from-end"},
		{"since and from-end", []string{"consume", "--since", "1m", "--from-end", "--follow"}, "--since excludes --from and --from-end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
			code := run(t.Context(), append(tt.args, "--insecure", "--addr", addr), e)
			if code != exitUsage || !strings.Contains(errb.String(), tt.want) || strings.Count(errb.String(), "\n") != 1 || out.Len() > 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and one line with %q", code, out.String(), errb.String(), exitUsage, tt.want)
			}
		})
	}
}

// jsonLine is consume --format json's output, parsed back.
type jsonLine struct {
	Offset  uint64 `json:"offset"`
	Value   []byte `json:"value"`
	Text    string `json:"text"`
	Key     []byte `json:"key"`
	KeyText string `json:"key_text"`
	Headers []struct {
		Key   string `json:"key"`
		Value []byte `json:"value"`
	} `json:"headers"`
	Time time.Time `json:"time"`
}

func TestKeysHeadersAndTimes(t *testing.T) {
	n := startTestNode(t, "p, anonymous, *, *\n")
	ctx := t.Context()
	must := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		out, errs, code := n.cli(ctx, stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return out
	}
	before := time.Now()
	if out := must(t, "", "produce", "--record-key", "user-1", "--header", "src=cli", "--header", "trace=a=b", "a", "b"); out != "0\n1\n" {
		t.Fatalf("produce with a key: %q", out)
	}
	// A line without the separator stops produce there: what came before
	// is in, that line and those after are not.
	out, errs, code := n.cli(ctx, "k1:v1\nk2:v2:x\nno separator\nk3:v3\n", "produce", "--key-separator", ":", "--header", "h=1")
	if code != 1 || out != "2\n3\n" || !strings.Contains(errs, `standard input line 3 has no key separator ":"`) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("produce with a bad line: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	after := time.Now()
	if out := must(t, "", "consume"); out != "a\nb\nv1\nv2:x\n" {
		t.Fatalf("consume after the bad line: %q", out)
	}

	var recs []jsonLine
	for line := range strings.Lines(must(t, "", "consume", "--format", "json")) {
		var r jsonLine
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		recs = append(recs, r)
	}
	wantKeys := []string{"user-1", "user-1", "k1", "k2"}
	wantHeaders := []string{"src=cli,trace=a=b", "src=cli,trace=a=b", "h=1", "h=1"}
	for i, r := range recs {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		if string(r.Key) != wantKeys[i] || r.KeyText != wantKeys[i] || strings.Join(hs, ",") != wantHeaders[i] {
			t.Errorf("record %d: key %q (%q), headers %q; want %q, %q", i, r.Key, r.KeyText, hs, wantKeys[i], wantHeaders[i])
		}
		if r.Time.Before(before.Add(-time.Second)) || r.Time.After(after.Add(time.Second)) || i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d: time %v, want it within [%v, %v] and not before the previous one", i, r.Time, before, after)
		}
	}
	if len(recs) != 4 {
		t.Fatalf("%d records in json", len(recs))
	}
	at := recs[2].Time.UTC().Format(timeLayout)
	if got := must(t, "", "consume", "--format", "text", "--meta", "--from", "2", "--count", "1"); got != at+"\tk1\th=1\tv1\n" {
		t.Errorf("text --meta = %q", got)
	}
	if got := must(t, "", "consume", "--format", "hex", "--meta", "--from", "3"); got != "3\t"+recs[3].Time.UTC().Format(timeLayout)+"\t6b32\t68=31\t76323a78\n" {
		t.Errorf("hex --meta = %q", got)
	}

	// Reads from a time: the first record at or after it, to the end.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"from the third record's time", []string{"--from-time", recs[2].Time.Format(time.RFC3339Nano)}, "v1\nv2:x\n"},
		{"from long ago", []string{"--from-time", "2000-01-01T00:00:00Z"}, "a\nb\nv1\nv2:x\n"},
		{"since an hour", []string{"--since", "1h"}, "a\nb\nv1\nv2:x\n"},
		{"with --to", []string{"--since", "1h", "--to", "1"}, "a\n"},
		{"with --count", []string{"--since", "1h", "--count", "3"}, "a\nb\nv1\n"},
		{"from the future", []string{"--from-time", time.Now().Add(time.Hour).Format(time.RFC3339)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := must(t, "", append([]string{"consume"}, tc.args...)...); got != tc.want {
				t.Fatalf("consume %v = %q, want %q", tc.args, got, tc.want)
			}
		})
	}

	// --follow --since: the existing records in range, then new ones live.
	f := startFollow(t, n.addr, "--since", "1h")
	f.waitOutput("a\nb\nv1\nv2:x\n")
	must(t, "", "produce", "-q", "live")
	f.waitOutput("a\nb\nv1\nv2:x\nlive\n")
	f.cancel()
	if code := <-f.done; code != 0 {
		t.Fatalf("interrupted follow: exit %d, stderr %q", code, f.errs.String())
	}
}
