//go:build slow

package main_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/proglog/proglog/internal/slowtest"
)

// TestDiskFullSurvivable runs `proglog serve` with its data dir on a 20 MiB
// tmpfs (a user and mount namespace), 4 MiB of it taken by a filler file,
// and produces until the disk is full: produces fail with
// ResourceExhausted saying so, the process stays up, reads and health
// checks answer (proglog.Writes NOT_SERVING), and once the filler is
// deleted produces succeed again without a restart.
func TestDiskFullSurvivable(t *testing.T) {
	slowtest.NeedUnshare(t)
	bin := buildProglog(t)
	tests := []struct {
		name  string
		extra []string
		// resume: produces succeed again once space is freed (else the
		// test checks only that the Raft log was reopened).
		resume bool
		// reads: consume works while the disk is full. (Without a reserve
		// the record store's writer hits ENOSPC too; it reopens the store
		// only once there is space for that, so reads go on meanwhile.)
		reads bool
	}{
		{name: "reserve", resume: true, reads: true},
		{name: "no reserve, ENOSPC", extra: []string{"--disk-reserve", "0"}, resume: true, reads: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { diskFull(t, bin, tt.extra, tt.resume, tt.reads) })
	}
}

func diskFull(t *testing.T, bin string, extra []string, resume, reads bool) {
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	for _, args := range [][]string{
		{"certs", "init", "--dir", pki},
		{"certs", "server", "--dir", pki, "--host", "localhost", "--host", "127.0.0.1"},
		{"certs", "client", "--dir", pki, "--name", "root"},
	} {
		if _, errs, code := runCLI(t, bin, nil, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	aclPath := filepath.Join(dir, "acl.csv")
	if err := os.WriteFile(aclPath, []byte("p, root, *, *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	// The shell mounts the tmpfs, fills 4 MiB, starts serve and says its
	// pid; a line "free" on its stdin deletes the filler.
	script := `mount -t tmpfs -o size=20m tmpfs "$1" || exit 97
head -c 4194304 /dev/zero > "$1/filler" || exit 98
shift
"$@" &
echo "serve pid $!"
while read line; do [ "$line" = free ] && rm -f "` + mnt + `/filler" && echo "filler deleted"; done
wait`
	serveArgs := []string{bin, "serve", "--data-dir", filepath.Join(mnt, "data"), "--addr", addr, "--log-format", "json",
		"--tls-cert", filepath.Join(pki, "server.pem"), "--tls-key", filepath.Join(pki, "server-key.pem"),
		"--tls-ca", filepath.Join(pki, "ca.pem"), "--acl", aclPath, "--node-id", "n1",
		"--segment-bytes", "1MiB", "--raft-snapshot-threshold", "1000000"}
	serveArgs = append(serveArgs, extra...)
	cmd := exec.Command("unshare", append([]string{"-rm", "sh", "-c", script, "sh", mnt}, serveArgs...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	})
	client := []string{"--addr", addr, "--ca", filepath.Join(pki, "ca.pem"),
		"--cert", filepath.Join(pki, "root.pem"), "--key", filepath.Join(pki, "root-key.pem")}
	cli := func(stdin io.Reader, args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, bin, stdin, append(args, client...)...)
	}
	ready := false
	for range 400 {
		select {
		case <-exited:
			if strings.Contains(out.String(), "mount:") {
				slowtest.Unavailable(t, "cannot mount tmpfs in a user namespace: %s", out.String())
			}
			t.Fatalf("serve exited early:\n%s", out.String())
		default:
		}
		if _, _, code := cli(nil, "stats"); code == 0 {
			ready = true
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !ready {
		t.Fatalf("serve never became ready:\n%s", out.String())
	}
	m := regexp.MustCompile(`serve pid (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no pid in the output:\n%s", out.String())
	}
	pid, _ := strconv.Atoi(m[1])

	tlsCfg := clientTLS(t, pki)
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	base := "https://" + addr
	health := grpchealth.NewClient(httpc, base, connect.WithGRPC())
	writes := func() grpchealth.Status {
		t.Helper()
		res, err := health.Check(t.Context(), &grpchealth.CheckRequest{Service: "proglog.Writes"})
		if err != nil {
			t.Fatalf("health check of proglog.Writes: %v", err)
		}
		return res.Status
	}
	if s := writes(); s != grpchealth.StatusServing {
		t.Fatalf("proglog.Writes = %v before the disk filled, want SERVING", s)
	}

	var lines strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&lines, "%06d-%s\n", i, strings.Repeat("d", 1000))
	}
	var produced int
	var refusal string
	for range 40 {
		o, errs, code := cli(strings.NewReader(lines.String()), "produce")
		produced += strings.Count(o, "\n")
		if code != 0 {
			refusal = errs
			break
		}
	}
	if refusal == "" {
		t.Fatal("40 MB produced on a 20 MiB tmpfs and no produce failed")
	}
	if !strings.Contains(refusal, "resource_exhausted") || !strings.Contains(refusal, "disk full") {
		t.Fatalf("produce on a full disk failed with %q, want resource_exhausted saying the disk is full", refusal)
	}
	t.Logf("%d records acknowledged; then: %s", produced, strings.TrimSpace(refusal))
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "no space") {
			t.Logf("server: %s", line)
		}
	}

	// Still alive, still serving reads, and says it is full.
	time.Sleep(3 * time.Second) // the panic used to come ~1.5 s after the first refusal
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("serve is gone after the disk filled: %v", err)
	}
	if o, errs, code := cli(nil, "consume", "--from", "0", "--count", "1"); reads && (code != 0 || !strings.HasPrefix(o, "000000-ddd")) {
		t.Fatalf("consume on a full disk: exit %d, %.40q, %s", code, o, errs)
	}
	if _, errs, code := cli(nil, "produce", "still-full"); code == 0 || !strings.Contains(errs, "resource_exhausted") {
		t.Fatalf("produce while full: exit %d, %s", code, errs)
	}
	if v := metric(t, httpc, base, "proglog_disk_full"); v != "1" {
		t.Fatalf("proglog_disk_full = %q while full", v)
	}
	waitFor(t, "proglog.Writes NOT_SERVING while full", 30*time.Second, func() bool { return writes() == grpchealth.StatusNotServing })
	res, err := health.Check(t.Context(), &grpchealth.CheckRequest{})
	if err != nil || res.Status != grpchealth.StatusServing {
		t.Fatalf("overall health while full = %v, %v; want SERVING (live, serving reads)", res, err)
	}

	// Free space: produces resume by themselves.
	if _, err := io.WriteString(stdin, "free\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the filler deleted", 30*time.Second, func() bool { return strings.Contains(out.String(), "filler deleted") })
	if !resume {
		waitFor(t, "the raft log reopened", 30*time.Second, func() bool {
			return strings.Contains(out.String(), "disk has space again")
		})
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("serve is gone after space was freed: %v", err)
		}
		if strings.Contains(out.String(), "panic:") {
			t.Fatal("server output has a panic")
		}
		return
	}
	waitFor(t, "a produce to succeed after space was freed", 30*time.Second, func() bool {
		_, _, code := cli(nil, "produce", "after")
		return code == 0
	})
	if v := metric(t, httpc, base, "proglog_disk_full"); v != "0" {
		t.Fatalf("proglog_disk_full = %q after space was freed", v)
	}
	waitFor(t, "proglog.Writes SERVING again", 30*time.Second, func() bool { return writes() == grpchealth.StatusServing })
	for _, bad := range []string{"panic:", "goroutine "} {
		if strings.Contains(out.String(), bad) {
			t.Fatalf("server output has %q", bad)
		}
	}
}

func clientTLS(t *testing.T, pki string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(pki, "root.pem"), filepath.Join(pki, "root-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// metric returns the value of an unlabelled metric from /metrics.
func metric(t *testing.T, c *http.Client, base, name string) string {
	t.Helper()
	res, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", res.StatusCode, err)
	}
	for line := range bytes.Lines(b) {
		if f := strings.Fields(string(line)); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return ""
}
