//go:build slow

package main_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proglog/proglog/internal/syncbuf"
)

// repoRoot is where the module lives, relative to this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildProglog builds the binary under test into a temporary directory.
func buildProglog(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "proglog")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tool finds an external program on $PATH or in .tmp/bin, or fails.
func tool(t *testing.T, name string, extra ...string) string {
	t.Helper()
	for _, p := range append([]string{filepath.Join(repoRoot(t), ".tmp", "bin", name)}, extra...) {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found on $PATH or in .tmp/bin: run make setup", name)
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// lockedBuffer collects output that goroutines write while the test reads it.
type lockedBuffer = syncbuf.Buffer

// node is a running `proglog serve`.
type node struct {
	t       *testing.T
	bin     string
	dataDir string
	addr    string
	cmd     *exec.Cmd
	stderr  *lockedBuffer
	done    chan struct{}
	err     error // the Wait result, once done is closed
}

func startNode(t *testing.T, bin, dataDir, addr string, extra ...string) *node {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--addr", addr, "--log-format", "json"}, extra...)
	// Ready once a client gets an answer.
	return launch(t, bin, dataDir, addr, args, func(n *node) bool {
		_, _, code := n.cli(t, nil, "stats")
		return code == 0
	})
}

// launch runs `serve args`, stops it when the test ends (showing its output
// if the test failed) and returns once ready says so.
func launch(t *testing.T, bin, dataDir, addr string, args []string, ready func(*node) bool) *node {
	t.Helper()
	n := &node{t: t, bin: bin, dataDir: dataDir, addr: addr, stderr: &lockedBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	n.cmd.Stderr, n.cmd.Stdout = n.stderr, n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("server output:\n%s", n.stderr.String())
		}
	})
	for range 400 {
		select {
		case <-n.done:
			t.Fatalf("server exited early: %v\n%s", n.err, n.stderr.String())
		default:
		}
		if ready(n) {
			return n
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("server never became ready:\n%s", n.stderr.String())
	return nil
}

// cli runs a client command against the node with the development identity.
func (n *node) cli(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLI(t, n.bin, stdin, append(args, "--data-dir", n.dataDir, "--addr", n.addr)...)
}

func runCLI(t *testing.T, bin string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	cmd.WaitDelay = time.Minute
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// stop sends SIGTERM and returns the exit code.
func (n *node) stop() int {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatal(err)
	}
	return n.wait()
}

func (n *node) wait() int {
	n.t.Helper()
	select {
	case <-n.done:
	case <-time.After(time.Minute):
		n.t.Fatalf("server did not exit:\n%s", n.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(n.err, &ee) {
		return ee.ExitCode()
	}
	if n.err != nil {
		n.t.Fatal(n.err)
	}
	return 0
}

type jsonRecord struct {
	Offset uint64 `json:"offset"`
	Text   string `json:"text"`
}

// readAll consumes the whole log as offset -> value.
func (n *node) readAll() map[uint64]string {
	n.t.Helper()
	out, errs, code := n.cli(n.t, nil, "consume", "--format", "json")
	if code != 0 {
		n.t.Fatalf("consume: exit %d: %s", code, errs)
	}
	got := map[uint64]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r jsonRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			n.t.Fatalf("consume output %q: %v", sc.Text(), err)
		}
		got[r.Offset] = r.Text
	}
	return got
}

func TestQuickstartRoundTripAndRestart(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	n := startNode(t, bin, dir, addr)

	files := []string{"certs/ca.pem", "certs/ca-key.pem", "certs/server.pem", "certs/server-key.pem",
		"certs/root.pem", "certs/root-key.pem", "certs/root.p12", "acl.csv"}
	before := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("quickstart file: %v", err)
		}
		before[f] = b
	}
	if !strings.Contains(string(before["acl.csv"]), "p, root, *, *") {
		t.Fatalf("acl.csv = %q", before["acl.csv"])
	}
	for _, want := range []string{"Created the development identity", "grpcurl -cacert", "root.p12", `password "proglog"`, "proglog produce", "https://localhost:"} {
		if !strings.Contains(n.stderr.String(), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, n.stderr.String())
		}
	}

	out, errs, code := n.cli(t, nil, "produce", "hello", "world")
	if code != 0 || out != "0\n1\n" {
		t.Fatalf("produce args: exit %d, out %q, err %q", code, out, errs)
	}
	var lines strings.Builder
	for i := range 250 {
		fmt.Fprintf(&lines, "line-%d\n", i)
	}
	out, errs, code = n.cli(t, strings.NewReader(lines.String()), "produce", "--batch", "7")
	if code != 0 || strings.Count(out, "\n") != 250 || !strings.HasPrefix(out, "2\n3\n") || !strings.HasSuffix(out, "\n251\n") {
		t.Fatalf("produce stdin: exit %d, err %q, out %q", code, errs, out)
	}
	for _, proto := range []string{"grpc", "connect", "grpcweb"} {
		out, errs, code = n.cli(t, nil, "consume", "--from", "1", "--count", "3", "--protocol", proto)
		if code != 0 || out != "world\nline-0\nline-1\n" {
			t.Fatalf("consume --protocol %s: exit %d, out %q, err %q", proto, code, out, errs)
		}
	}
	out, _, code = n.cli(t, nil, "consume", "--from-end", "--from", "2")
	if code != 0 || out != "line-248\nline-249\n" {
		t.Fatalf("consume --from-end: exit %d, out %q", code, out)
	}
	out, _, code = n.cli(t, nil, "whoami")
	if code != 0 || !strings.Contains(out, "subject:       root") {
		t.Fatalf("whoami: exit %d, out %q", code, out)
	}

	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d after SIGTERM, want 0", code)
	}

	// A second start reuses the identity and the data.
	n = startNode(t, bin, dir, addr)
	if !strings.Contains(n.stderr.String(), "Reusing the development identity") {
		t.Errorf("second start output:\n%s", n.stderr.String())
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Equal(b, before[f]) {
			t.Errorf("%s changed on the second start (err %v)", f, err)
		}
	}
	got := n.readAll()
	if len(got) != 252 || got[0] != "hello" || got[251] != "line-249" {
		t.Fatalf("after restart: %d records, [0]=%q [251]=%q", len(got), got[0], got[251])
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

func TestCLIErrorsAndExitCodes(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	certs := filepath.Join(dir, "certs")

	// A consume-only identity, then an ACL edit picked up without restart.
	if _, errs, code := runCLI(t, bin, nil, "certs", "client", "--dir", certs, "--name", "reader"); code != 0 {
		t.Fatalf("certs client: %s", errs)
	}
	reader := []string{"--cert", filepath.Join(certs, "reader.pem"), "--key", filepath.Join(certs, "reader-key.pem")}
	_, errs, code := n.cli(t, nil, append([]string{"produce", "x"}, reader...)...)
	if code != 3 || !strings.HasPrefix(errs, "proglog: permission_denied:") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("reader produce: exit %d, stderr %q; want 3 and one line", code, errs)
	}
	noCert := []string{"--ca", filepath.Join(certs, "ca.pem"), "--data-dir", t.TempDir()}
	_, errs, code = runCLI(t, bin, nil, append([]string{"stats", "--addr", n.addr}, noCert...)...)
	if code != 3 || !strings.Contains(errs, "unauthenticated") {
		t.Fatalf("anonymous stats: exit %d, stderr %q", code, errs)
	}
	acl := "p, root, *, *\np, reader, log, produce\n"
	if err := os.WriteFile(filepath.Join(dir, "acl.csv.tmp"), []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "acl.csv.tmp"), filepath.Join(dir, "acl.csv")); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		out, _, code := n.cli(t, nil, append([]string{"produce", "x"}, reader...)...)
		if code == 0 && out == "0\n" {
			break
		}
		if i == 400 {
			t.Fatalf("the ACL edit never took effect:\n%s", n.stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}

	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string
	}{
		{"unknown command", []string{"frobnicate"}, "", 2, "unknown command"},
		{"bad flag", []string{"consume", "--nope"}, "", 2, "unknown flag"},
		{"bad protocol", []string{"stats", "--protocol", "smoke"}, "", 2, "--protocol"},
		{"bad format", []string{"consume", "--format", "xml"}, "", 2, "--format"},
		{"to and count", []string{"consume", "--to", "3", "--count", "1"}, "", 2, "exclude"},
		{"oversize record", []string{"produce"}, strings.Repeat("x", 1<<20+1) + "\n", 1, "invalid_argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, code := n.cli(t, strings.NewReader(tt.stdin), tt.args...)
			if code != tt.code || !strings.HasPrefix(errs, "proglog: ") || !strings.Contains(errs, tt.want) || strings.Count(errs, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", code, errs, tt.code, tt.want)
			}
		})
	}
	_, errs, code = runCLI(t, bin, nil, "stats", "--data-dir", dir, "--addr", freeAddr(t))
	if code != 1 || !strings.HasPrefix(errs, "proglog: unavailable:") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("nothing listening: exit %d, stderr %q", code, errs)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

func TestGrpcurl(t *testing.T) {
	grpcurl := tool(t, "grpcurl")
	bin := buildProglog(t)
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	_, port, _ := net.SplitHostPort(n.addr)
	target := "localhost:" + port
	certs := filepath.Join(dir, "certs")
	mtls := []string{"-cacert", filepath.Join(certs, "ca.pem"), "-cert", filepath.Join(certs, "root.pem"), "-key", filepath.Join(certs, "root-key.pem")}
	anon := []string{"-cacert", filepath.Join(certs, "ca.pem")}
	run := func(flags, rest []string) (string, int) {
		t.Helper()
		var out bytes.Buffer
		args := append(append(append([]string{}, flags...), target), rest...)
		cmd := exec.Command(grpcurl, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}
	with := func(auth []string, flags ...string) []string { return append(append([]string{}, auth...), flags...) }
	tests := []struct {
		name    string
		flags   []string // before the target
		rest    []string // after it
		wantErr bool
		want    []string
	}{
		{"list", mtls, []string{"list"}, false, []string{"log.v1.LogService", "grpc.health.v1.Health"}},
		{"describe", mtls, []string{"describe", "log.v1.LogService"}, false, []string{"rpc Produce", "rpc ConsumeStream", "stream .log.v1.ConsumeStreamResponse"}},
		{"produce first", with(mtls, "-d", `{"record":{"value":"Zmlyc3Q="}}`), []string{"log.v1.LogService/Produce"}, false, []string{"{"}},
		{"produce second", with(mtls, "-d", `{"record":{"value":"c2Vjb25k"}}`), []string{"log.v1.LogService/Produce"}, false, []string{`"offset": "1"`}},
		{"consume", with(mtls, "-d", `{"offset":"1"}`), []string{"log.v1.LogService/Consume"}, false, []string{`"value": "c2Vjb25k"`, `"offset": "1"`}},
		{"consume stream", with(mtls, "-d", `{"offset":"0"}`, "-max-time", "2"), []string{"log.v1.LogService/ConsumeStream"}, true, []string{`"value": "Zmlyc3Q="`, `"value": "c2Vjb25k"`, "DeadlineExceeded"}},
		{"consume past end", with(mtls, "-d", `{"offset":"9"}`), []string{"log.v1.LogService/Consume"}, true, []string{"OutOfRange", "log.v1.OffsetRange", `"next": "2"`}},
		{"produce keyed", with(mtls, "-d", `{"record":{"key":"dXNlci0x","headers":[{"key":"trace","value":"YWJj"},{"key":"trace"}],"value":"aGk="}}`), []string{"log.v1.LogService/Produce"}, false, []string{`"offset": "2"`}},
		{"consume keyed", with(mtls, "-d", `{"offset":"2"}`), []string{"log.v1.LogService/Consume"}, false, []string{`"key": "dXNlci0x"`, `"key": "trace"`, `"value": "YWJj"`, `"time": "20`, `"value": "aGk="`}},
		{"offset for an early time", with(mtls, "-d", `{"time":"2000-01-01T00:00:00Z"}`), []string{"log.v1.LogService/GetOffsetForTime"}, false, []string{`"time": "20`}},
		{"consume from a time", with(mtls, "-d", `{"fromTime":"2000-01-01T00:00:00Z"}`), []string{"log.v1.LogService/Consume"}, false, []string{`"value": "Zmlyc3Q="`}},
		{"bad header key", with(mtls, "-d", `{"record":{"headers":[{"key":""}],"value":"aGk="}}`), []string{"log.v1.LogService/Produce"}, true, []string{"InvalidArgument", "empty key", "OUTCOME_NOT_APPLIED"}},
		{"health", mtls, []string{"grpc.health.v1.Health/Check"}, false, []string{"SERVING"}},
		{"anonymous produce", with(anon, "-d", `{"record":{"value":"eA=="}}`), []string{"log.v1.LogService/Produce"}, true, []string{"Unauthenticated"}},
		{"anonymous list", anon, []string{"list"}, true, []string{"Unauthenticated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := run(tt.flags, tt.rest)
			if (code != 0) != tt.wantErr {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// Health is open to anonymous callers; grpcurl would need reflection
	// (an admin action) for the schema, so ask over Connect's JSON form.
	t.Run("anonymous health", func(t *testing.T) {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(filepath.Join(certs, "ca.pem"))
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("ca.pem: %v", err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post("https://"+target+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "SERVING") {
			t.Fatalf("health: %s %s", resp.Status, body)
		}
	})
	if got := n.readAll(); got[0] != "first" || got[1] != "second" || got[2] != "hi" || len(got) != 3 {
		t.Fatalf("log after grpcurl: %v", got)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

func TestBufCurl(t *testing.T) {
	root := repoRoot(t)
	buf := filepath.Join(root, "web", "node_modules", ".bin", "buf")
	if _, err := os.Stat(buf); err != nil {
		t.Fatalf("%s not found: run make setup", buf)
	}
	bin := buildProglog(t)
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	_, port, _ := net.SplitHostPort(n.addr)
	base := "https://localhost:" + port + "/log.v1.LogService/"
	certs := filepath.Join(dir, "certs")
	tlsArgs := []string{"--cacert", filepath.Join(certs, "ca.pem"), "--cert", filepath.Join(certs, "root.pem"), "--key", filepath.Join(certs, "root-key.pem")}
	tests := []struct {
		name     string
		protocol string
		schema   bool // --schema from the repo's proto module, else reflection
		method   string
		data     string
		want     string
	}{
		{"grpc schema produce", "grpc", true, "Produce", `{"record":{"value":"b25l"}}`, "{"},
		{"connect reflection produce", "connect", false, "Produce", `{"record":{"value":"dHdv"}}`, `"offset": "1"`},
		{"grpcweb schema batch", "grpcweb", true, "ProduceBatch", `{"records":[{"value":"My0x"},{"value":"My0y"}]}`, `"count": 2`},
		{"grpc reflection consume", "grpc", false, "Consume", `{"offset":"1"}`, `"value": "dHdv"`},
		{"connect schema consume", "connect", true, "Consume", `{"offset":"3"}`, `"value": "My0y"`},
		{"grpc stats", "grpc", false, "GetStats", `{}`, `"nextOffset": "4"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"curl", "--protocol", tt.protocol, "--data", tt.data}, tlsArgs...)
			if tt.schema {
				args = append(args, "--schema", root)
			}
			cmd := exec.Command(buf, append(args, base+tt.method)...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("buf curl: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

func TestSIGTERMDuringFollow(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	if _, errs, code := n.cli(t, nil, "produce", "a", "b", "c"); code != 0 {
		t.Fatal(errs)
	}
	follow := exec.Command(bin, "consume", "--follow", "--data-dir", dir, "--addr", n.addr)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var ferr lockedBuffer
	follow.Stderr = &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan struct{})
	var followErr error // set before followDone closes
	lines := make(chan string, 16)
	go func() {
		defer close(followDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		followErr = follow.Wait()
	}()
	t.Cleanup(func() {
		follow.Process.Kill()
		for range lines {
		}
		<-followDone
	})
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("follow ended early: %s", ferr.String())
			}
			return l
		case <-time.After(time.Minute):
			t.Fatal("follow printed nothing")
		}
		return ""
	}
	for _, want := range []string{"a", "b", "c"} {
		if got := next(); got != want {
			t.Fatalf("follow printed %q, want %q", got, want)
		}
	}
	// A record produced now arrives live.
	if _, errs, code := n.cli(t, nil, "produce", "live"); code != 0 {
		t.Fatal(errs)
	}
	if got := next(); got != "live" {
		t.Fatalf("follow printed %q, want live", got)
	}

	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d after SIGTERM during a live tail, want 0:\n%s", code, n.stderr.String())
	}
	if strings.Contains(n.stderr.String(), "shutdown: ") {
		t.Fatalf("shutdown did not finish cleanly:\n%s", n.stderr.String())
	}

	// The tail outlives the server: it reconnects once the node is back and
	// resumes after the last record it printed.
	n = startNode(t, bin, dir, n.addr)
	if _, errs, code := n.cli(t, nil, "produce", "after"); code != 0 {
		t.Fatal(errs)
	}
	if got := next(); got != "after" {
		t.Fatalf("follow printed %q after the restart, want after (stderr %s)", got, ferr.String())
	}
	if err := follow.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	<-followDone
	if followErr != nil {
		t.Fatalf("interrupted consume --follow: %v: %s", followErr, ferr.String())
	}
	got := n.readAll()
	if len(got) != 5 || got[0] != "a" || got[3] != "live" || got[4] != "after" {
		t.Fatalf("after restart: %v", got)
	}
	n.stop()
}

func TestKill9DuringProduce(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))

	producer := exec.Command(bin, "produce", "--batch", "50", "--data-dir", dir, "--addr", n.addr)
	stdin, err := producer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := producer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var perr lockedBuffer
	producer.Stderr = &perr
	if err := producer.Start(); err != nil {
		t.Fatal(err)
	}
	// The writer feeds value v-<i> as line i until the producer goes away.
	stopWriting := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer stdin.Close()
		w := bufio.NewWriter(stdin)
		for i := range 5_000_000 {
			select {
			case <-stopWriting:
				return
			default:
			}
			if _, err := fmt.Fprintf(w, "v-%d\n", i); err != nil {
				return
			}
			if i%100 == 99 {
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
	}()
	var acked []uint64
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		off, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("producer printed %q", sc.Text())
		}
		acked = append(acked, off)
		if len(acked) == 20_000 && !killed {
			killed = true
			if err := n.cmd.Process.Kill(); err != nil { // SIGKILL mid-load
				t.Fatal(err)
			}
		}
	}
	close(stopWriting)
	<-writerDone
	perrWait := producer.Wait()
	if !killed {
		t.Fatalf("producer stopped after %d acks before the kill: %v %s", len(acked), perrWait, perr.String())
	}
	if perrWait == nil {
		t.Fatalf("producer exited 0 although the server was killed")
	}
	n.wait()

	n = startNode(t, bin, dir, n.addr)
	got := n.readAll()
	for i, off := range acked {
		if off != uint64(i) {
			t.Fatalf("ack %d is offset %d: acks must be dense from 0", i, off)
		}
		if want := fmt.Sprintf("v-%d", off); got[off] != want {
			t.Fatalf("acknowledged offset %d reads back %q, want %q (%d acked, %d in the log)", off, got[off], want, len(acked), len(got))
		}
	}
	t.Logf("%d acknowledged before kill -9, %d records after restart", len(acked), len(got))
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

func TestCertsAndExplicitTLSFromConfigFile(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	steps := [][]string{
		{"certs", "init", "--dir", pki},
		{"certs", "server", "--dir", pki, "--host", "localhost", "--host", "127.0.0.1"},
		{"certs", "client", "--dir", pki, "--name", "alice", "--p12", "--password", "secret"},
		{"certs", "client", "--dir", pki, "--name", "bob"},
	}
	for _, args := range steps {
		if _, errs, code := runCLI(t, bin, nil, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	if _, errs, code := runCLI(t, bin, nil, "certs", "init", "--dir", pki); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("certs init over an existing CA: exit %d, %q", code, errs)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "alice.pem", "alice-key.pem", "alice.p12", "bob.pem"} {
		fi, err := os.Stat(filepath.Join(pki, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f, "key") || strings.HasSuffix(f, ".p12") {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
	}
	aclPath := filepath.Join(dir, "policy.csv")
	if err := os.WriteFile(aclPath, []byte("p, alice, *, *\np, bob, log, consume\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	conf := filepath.Join(dir, "proglog.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`# explicit TLS, no quickstart
addr = %s
data-dir = %s
tls-cert = %s
tls-key = %s
tls-ca = %s
acl = %s
sync = interval
sync-interval = 10ms
segment-bytes = 64KiB
`, addr, filepath.Join(dir, "data"), filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem"), filepath.Join(pki, "ca.pem"), aclPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The flag values are only in the file; --addr on the command line is
	// what startNode passes too, and wins.
	n := startNodeWithConfig(t, bin, conf, addr)
	if _, err := os.Stat(filepath.Join(dir, "data", "certs")); err == nil {
		t.Fatal("the quickstart ran although TLS flags came from the config file")
	}
	client := func(name string) []string {
		return []string{"--addr", addr, "--ca", filepath.Join(pki, "ca.pem"), "--cert", filepath.Join(pki, name+".pem"), "--key", filepath.Join(pki, name+"-key.pem")}
	}
	var lines strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&lines, "%04d-%s\n", i, strings.Repeat("z", 40))
	}
	if out, errs, code := runCLI(t, bin, strings.NewReader(lines.String()), append([]string{"produce"}, client("alice")...)...); code != 0 || strings.Count(out, "\n") != 3000 {
		t.Fatalf("alice produce: exit %d, %d lines, %s", code, strings.Count(out, "\n"), errs)
	}
	if _, errs, code := runCLI(t, bin, nil, append([]string{"produce", "x"}, client("bob")...)...); code != 3 || !strings.Contains(errs, `subject "bob" may not "produce"`) {
		t.Fatalf("bob produce: exit %d, %q", code, errs)
	}
	out, errs, code := runCLI(t, bin, nil, append([]string{"consume", "--from", "2998"}, client("bob")...)...)
	if code != 0 || !strings.HasPrefix(out, "2998-") || strings.Count(out, "\n") != 2 {
		t.Fatalf("bob consume: exit %d, %q, %s", code, out, errs)
	}
	out, _, code = runCLI(t, bin, nil, append([]string{"stats"}, client("bob")...)...)
	if code != 0 || !strings.Contains(out, "next:     3000") || strings.Contains(out, "segments: 1\n") {
		t.Fatalf("stats (64 KiB segments should have rolled): %s", out)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
}

// startNodeWithConfig starts serve with only --config and --addr.
func startNodeWithConfig(t *testing.T, bin, conf, addr string) *node {
	t.Helper()
	return launch(t, bin, "", addr, []string{"--config", conf, "--addr", addr}, func(n *node) bool {
		return strings.Contains(n.stderr.String(), `"msg":"serving"`)
	})
}

func TestInsecure(t *testing.T) {
	bin := buildProglog(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	// Without a policy an insecure node refuses to start: deny by default.
	if _, errs, code := runCLI(t, bin, nil, "serve", "--insecure", "--data-dir", dir, "--addr", addr); code != 1 || !strings.Contains(errs, "acl.csv") {
		t.Fatalf("insecure without ACL: exit %d, %q", code, errs)
	}
	if err := os.WriteFile(filepath.Join(dir, "acl.csv"), []byte("p, anonymous, log, *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNodeWithConfig(t, bin, writeConf(t, "insecure = true\ndata-dir = "+dir+"\n"), addr)
	if !strings.Contains(n.stderr.String(), `"level":"WARN"`) || !strings.Contains(n.stderr.String(), "PLAINTEXT") {
		t.Fatalf("--insecure was not logged loudly:\n%s", n.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "certs")); err == nil {
		t.Fatal("--insecure ran the quickstart")
	}
	if out, errs, code := runCLI(t, bin, nil, "produce", "--insecure", "--addr", addr, "plain"); code != 0 || out != "0\n" {
		t.Fatalf("insecure produce: exit %d, %q, %s", code, out, errs)
	}
	if out, _, code := runCLI(t, bin, nil, "whoami", "--insecure", "--addr", addr); code != 0 || !strings.Contains(out, "anonymous") {
		t.Fatalf("whoami: %q", out)
	}
	// TLS clients cannot talk to a plaintext node.
	if _, _, code := runCLI(t, bin, nil, "stats", "--addr", addr, "--data-dir", t.TempDir()); code != 1 {
		t.Fatalf("TLS client against a plaintext node: exit %d", code)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}

	// Served with TLS, the standalone log becomes a one-member cluster that
	// keeps its records; after that it has Raft state and --insecure, which
	// serves without Raft, refuses it.
	rootACL := filepath.Join(t.TempDir(), "acl.csv")
	if err := os.WriteFile(rootACL, []byte("p, root, *, *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, bin, dir, addr, "--acl", rootACL)
	if out, errs, code := n.cli(t, nil, "produce", "clustered"); code != 0 || out != "1\n" {
		t.Fatalf("produce after adoption: exit %d, %q, %s", code, out, errs)
	}
	if got := n.readAll(); len(got) != 2 || got[0] != "plain" || got[1] != "clustered" {
		t.Fatalf("after adoption the log holds %v, want [plain clustered]", got)
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
	if _, errs, code := runCLI(t, bin, nil, "serve", "--insecure", "--data-dir", dir, "--addr", addr); code != 2 || !strings.Contains(errs, "holds Raft state") {
		t.Fatalf("--insecure over Raft state: exit %d, %q", code, errs)
	}
}

func writeConf(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proglog.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
