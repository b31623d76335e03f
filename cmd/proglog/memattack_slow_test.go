//go:build slow

package main_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The memory bound anonymous callers cannot push a node past, as the
// README ("Security"), service/doc.go and docs/security.md state it for the
// default limits: the node's peak RSS, baseline included.
const anonymousAttackBoundMB = 150

// Anonymous callers open many HTTP/2 connections and streams, send the
// headers of an open RPC (WhoAmI, Health) and never the body. The node's
// memory stays under the documented bound, and an authenticated client
// produces and consumes meanwhile.
//
// PROGLOG_TEST_BIN runs it against another binary, e.g. one built from an
// older commit, to measure the same attack there.
func TestAnonymousStreamFloodMemoryBound(t *testing.T) {
	bin := os.Getenv("PROGLOG_TEST_BIN")
	if bin == "" {
		bin = buildProglog(t)
	}
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	base := procStatusKB(t, n.cmd.Process.Pid, "VmRSS")

	// 160 connections (more than --max-anonymous-conns) x 300 streams:
	// 48,000 streams, each holding a handler goroutine and its request
	// when nothing bounds them. And 850 connections that start a TLS
	// handshake and stall, announcing a 16 KiB record they never send.
	const conns, streams, stalled = 160, 300, 850
	var (
		mu     sync.Mutex // guards held and dialed
		held   []net.Conn
		dialed int // TLS connections the client saw complete their handshake
	)
	hold := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, c)
		if _, ok := c.(*tls.Conn); ok {
			dialed++
		}
	}
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	cfg := anonymousTLS(t, dir)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			conn, err := tls.Dial("tcp", n.addr, cfg)
			if err != nil {
				return // refused: fine
			}
			hold(conn)
			// Drain what the server sends, so its writes never block.
			go func() { _, _ = io.Copy(io.Discard, conn) }()
			headersOnly(conn, streams, i%2 == 0)
		})
	}
	for range stalled {
		wg.Go(func() {
			conn, err := net.Dial("tcp", n.addr)
			if err != nil {
				return
			}
			hold(conn)
			_, _ = conn.Write([]byte{0x16, 0x03, 0x01, 0x40, 0x00}) // a handshake record of 16 KiB
		})
	}
	wg.Wait()
	if dialed < conns {
		// The server refuses anonymous connections past its cap after the
		// handshake, which the client has finished by then: every dial
		// must succeed, or the attack did not happen.
		t.Fatalf("only %d of %d attacking TLS connections were made", dialed, conns)
	}

	// The authenticated client works during the attack.
	out, errs, code := n.cli(t, nil, "produce", "during", "the", "attack")
	if code != 0 || out != "0\n1\n2\n" {
		t.Fatalf("produce during the attack: exit %d, out %q, err %q", code, out, errs)
	}
	out, errs, code = n.cli(t, nil, "consume", "--from", "1", "--count", "2")
	if code != 0 || out != "the\nattack\n" {
		t.Fatalf("consume during the attack: exit %d, out %q, err %q", code, out, errs)
	}

	// Let the server take in what was sent; the peak is what counts.
	time.Sleep(2 * time.Second)
	peak := procStatusKB(t, n.cmd.Process.Pid, "VmHWM")
	rss := procStatusKB(t, n.cmd.Process.Pid, "VmRSS")
	t.Logf("%d anonymous connections x %d streams, %d stalled handshakes: RSS %d MB before, %d MB after, peak %d MB (bound %d MB)",
		conns, streams, stalled, base>>10, rss>>10, peak>>10, anonymousAttackBoundMB)
	if peak>>10 >= anonymousAttackBoundMB {
		t.Fatalf("peak RSS %d MB under the attack, over the documented bound of %d MB", peak>>10, anonymousAttackBoundMB)
	}
}

// anonymousTLS trusts the quickstart CA in dir and presents no certificate.
func anonymousTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
}

// headersOnly speaks HTTP/2 on conn and opens streams to WhoAmI (or to
// Health) with headers and no body, then leaves them open. The first
// streams (as many as the server takes from an anonymous caller by
// default) carry as many header bytes as it accepts, never indexed by
// HPACK, so each costs its full size.
func headersOnly(conn *tls.Conn, streams int, whoami bool) {
	const bigStreams, pad = 8, 3900
	padding := strings.Repeat("p", pad)
	path := "/grpc.health.v1.Health/Check"
	if whoami {
		path = "/log.v1.LogService/WhoAmI"
	}
	bw := bufio.NewWriter(conn)
	fr := http2.NewFramer(bw, conn)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	if _, err := io.WriteString(bw, http2.ClientPreface); err != nil {
		return
	}
	if err := fr.WriteSettings(); err != nil {
		return
	}
	for i := range streams {
		hbuf.Reset()
		for _, f := range [][2]string{
			{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path},
			{"content-type", "application/grpc"}, {"te", "trailers"},
		} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if i < bigStreams {
			for range 4 {
				_ = enc.WriteField(hpack.HeaderField{Name: "x-pad", Value: padding, Sensitive: true})
			}
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
			return
		}
	}
	_ = bw.Flush()
}

// procStatusKB reads a "kB" field of /proc/<pid>/status (VmRSS, VmHWM).
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the server's memory: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB"))
		if err != nil {
			t.Fatalf("%s: %q: %v", field, value, err)
		}
		return kb
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A header block that never ends (HEADERS without END_HEADERS, then empty
// CONTINUATION frames, while another stream keeps the connection busy) is
// cut by the node after a bounded number of frames.
func TestContinuationFloodClosesConnection(t *testing.T) {
	bin := os.Getenv("PROGLOG_TEST_BIN")
	if bin == "" {
		bin = buildProglog(t)
	}
	dir := t.TempDir()
	n := startNode(t, bin, dir, freeAddr(t))
	conn, err := tls.Dial("tcp", n.addr, anonymousTLS(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	headersOnly(conn, 1, true) // stream 1 stays open
	fr := http2.NewFramer(conn, conn)
	var hbuf bytes.Buffer
	_ = hpack.NewEncoder(&hbuf).WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hbuf.Bytes()}); err != nil {
		t.Fatal(err)
	}
	const frames = 10000
	sent := 0
	for ; sent < frames; sent++ {
		if err := fr.WriteContinuation(3, false, nil); err != nil {
			break // the server closed the connection
		}
	}
	// Whatever the socket buffers took, the server must now end it.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := fr.ReadFrame()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %d empty CONTINUATION frames", sent)
		}
		if err != nil {
			return // closed
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Logf("GOAWAY %v after %d frames sent", g.ErrCode, sent)
			return
		}
	}
}
