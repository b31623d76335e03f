package service_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
)

// tlsConfig is a client TLS config for id (idNone: no certificate).
func (e *env) tlsConfig(id string, protos ...string) *tls.Config {
	e.t.Helper()
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
		e.t.Fatal(err)
	}
	cfg.ServerName = "127.0.0.1"
	cfg.NextProtos = protos
	return cfg
}

// labelled reads the metric name{label="value"} from the env's registry.
func (e *env) labelled(name, label, value string) float64 {
	e.t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// h2Conn is a raw HTTP/2 connection driven frame by frame.
type h2Conn struct {
	t    testing.TB
	conn *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// settings the server sent first
	settings map[http2.SettingID]uint32
}

// dialH2 opens an HTTP/2 connection as id and reads the server's SETTINGS.
func (e *env) dialH2(id string) *h2Conn {
	e.t.Helper()
	conn, err := tls.Dial("tcp", e.addr, e.tlsConfig(id, "h2"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &h2Conn{t: e.t, conn: conn, fr: http2.NewFramer(conn, conn), settings: map[http2.SettingID]uint32{}}
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		e.t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		e.t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := c.fr.ReadFrame()
	if err != nil {
		e.t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		e.t.Fatalf("first frame %v, want SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error {
		c.settings[s.ID] = s.Val
		return nil
	})
	_ = conn.SetReadDeadline(time.Time{})
	return c
}

// headerBlock encodes the request headers of a gRPC call to path.
func (c *h2Conn) headerBlock(path string) []byte {
	c.hbuf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", path},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// openStream sends the headers of a call and no body.
func (c *h2Conn) openStream(id uint32, path string) {
	c.t.Helper()
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock(path), EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// closed waits until the server ends the connection (GOAWAY, or EOF or a
// reset) and reports whether it did within wait.
func (c *h2Conn) closed(wait time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := c.fr.ReadFrame()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return false
		case err != nil:
			return true
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			return true
		}
	}
}

func TestTLSOffersOnlyAEADSuites(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name    string
		version uint16
		suites  []uint16
		ok      bool
	}{
		{"TLS 1.2 CBC only", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}, false},
		{"TLS 1.2 CBC-SHA256 only", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}, false},
		{"TLS 1.2 RSA key exchange GCM", tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, false},
		{"TLS 1.2 ECDHE GCM", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, true},
		{"TLS 1.2 ChaCha20", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, true},
		{"TLS 1.3", tls.VersionTLS13, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.tlsConfig(idRoot, "h2")
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tt.version, tt.version, tt.suites
			conn, err := tls.Dial("tcp", e.addr, cfg)
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("handshake error %v, want success %v", err, tt.ok)
			}
		})
	}
}

// Anonymous connections beyond the cap are closed after their handshake;
// authenticated ones and handed-off (Raft) ones are not counted.
func TestAnonymousConnectionCap(t *testing.T) {
	const proto = "proglog-test"
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.Limits.MaxAnonymousConns = 2
		c.Handoffs = map[string]func(*tls.Conn){proto: func(conn *tls.Conn) { _, _ = io.Copy(io.Discard, conn) }}
	}})
	for range 2 {
		c := e.dialH2(idNone)
		if !c.closed(200 * time.Millisecond) {
			continue
		}
		t.Fatal("an anonymous connection within the cap was closed")
	}
	// Anonymous handshakes to the handoff protocol are not counted either.
	for range 3 {
		conn, err := tls.Dial("tcp", e.addr, e.tlsConfig(idNone, proto))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	// The third anonymous connection is refused...
	conn, err := tls.Dial("tcp", e.addr, e.tlsConfig(idNone, "h2"))
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("third anonymous connection: %v, want it closed", err)
	}
	// ...while authenticated callers get in.
	for range 3 {
		if _, err := e.client(idRoot).WhoAmI(t.Context(), &logv1.WhoAmIRequest{}); err != nil {
			t.Fatalf("authenticated WhoAmI: %v", err)
		}
	}
	if got := e.labelled("proglog_server_refused_connections_total", "reason", "max_anonymous_conns"); got != 1 {
		t.Errorf("refused for max_anonymous_conns: %v, want 1", got)
	}
	waitFor(t, "2 anonymous and 3 handoff connections in the metrics", func() bool {
		return e.labelled("proglog_server_connections", "class", "anonymous") == 2 &&
			e.labelled("proglog_server_connections", "class", "handoff") == 3
	})
}

func TestConnectionCap(t *testing.T) {
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.Limits.MaxConns = 3
		c.Limits.MaxAnonymousConns = 3
	}})
	var held []net.Conn
	for range 3 {
		conn, err := tls.Dial("tcp", e.addr, e.tlsConfig(idRoot, "h2"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	if _, err := tls.Dial("tcp", e.addr, e.tlsConfig(idRoot, "h2")); err == nil {
		t.Fatal("a connection past MaxConns completed its handshake")
	}
	// Closing one makes room again.
	held[0].Close()
	waitFor(t, "a free connection slot", func() bool {
		conn, err := tls.Dial("tcp", e.addr, e.tlsConfig(idRoot, "h2"))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	for _, c := range held[1:] {
		c.Close()
	}
	if got := e.labelled("proglog_server_refused_connections_total", "reason", "max_conns"); got < 1 {
		t.Errorf("refused for max_conns: %v, want at least 1", got)
	}
}

// Anonymous HTTP/2 connections are offered fewer streams and smaller
// headers than authenticated ones.
func TestHTTP2SettingsByCaller(t *testing.T) {
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.Limits.MaxStreams = 100
		c.Limits.MaxAnonymousStreams = 4
	}})
	tests := []struct {
		id          string
		streams     uint32
		headerBytes uint32 // at most
		window      uint32
	}{
		{idRoot, 100, 64<<10 + 4096, 4 << 20},
		{idNone, 4, 16<<10 + 4096, 64 << 10},
	}
	for _, tt := range tests {
		c := e.dialH2(tt.id)
		if got := c.settings[http2.SettingMaxConcurrentStreams]; got != tt.streams {
			t.Errorf("%q: MAX_CONCURRENT_STREAMS %d, want %d", tt.id, got, tt.streams)
		}
		if got := c.settings[http2.SettingInitialWindowSize]; got != tt.window {
			t.Errorf("%q: INITIAL_WINDOW_SIZE %d, want %d", tt.id, got, tt.window)
		}
		if got := c.settings[http2.SettingMaxHeaderListSize]; got == 0 || got > tt.headerBytes {
			t.Errorf("%q: MAX_HEADER_LIST_SIZE %d, want at most %d", tt.id, got, tt.headerBytes)
		}
	}
}

// A header block that never ends (HEADERS without END_HEADERS, then empty
// CONTINUATION frames) gets the connection closed after a bounded number
// of frames. net/http alone lets it run until the idle timeout, and never
// while another stream is open (CVE-2023-45288 bounded header bytes, not
// frames).
func TestContinuationFloodIsCut(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, id := range []string{idNone, idRoot} {
		c := e.dialH2(id)
		// A stream left open keeps net/http's idle timer off.
		c.openStream(1, logv1connect.LogServiceWhoAmIProcedure)
		block := c.headerBlock(logv1connect.LogServiceWhoAmIProcedure)
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:1]}); err != nil {
			t.Fatal(err)
		}
		const frames = 1000 // well past the cap, and within socket buffers
		for range frames {
			if err := c.fr.WriteContinuation(3, false, nil); err != nil {
				break // closed already
			}
		}
		if !c.closed(10 * time.Second) {
			t.Fatalf("%q: connection still open after %d empty CONTINUATION frames", id, frames)
		}
	}
	if got := e.labelled("proglog_server_refused_connections_total", "reason", "continuation_flood"); got != 2 {
		t.Errorf("cut for continuation_flood: %v, want 2", got)
	}
}

// A header block split over many small frames, as a client may legally
// send it, still goes through.
func TestContinuationWithinCap(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dialH2(idNone)
	block := c.headerBlock(logv1connect.LogServiceWhoAmIProcedure)
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	rest := block[1:]
	for i := range 100 {
		var frag []byte
		if i == 99 {
			frag = rest
		}
		if err := c.fr.WriteContinuation(1, i == 99, frag); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 1 {
			return // answered (an error for the empty body is fine)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v", g.ErrCode)
		}
	}
}

// A request that sent its headers but not its body fails once
// BodyTimeout passes, unary or streaming; a ProduceStream whose first
// message came in time may then stay quiet for longer.
func TestBodyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) { c.Limits.BodyTimeout = timeout }})

	t.Run("headers only", func(t *testing.T) {
		for _, id := range []string{idNone, idRoot} {
			for _, path := range []string{logv1connect.LogServiceWhoAmIProcedure, logv1connect.LogServiceProduceStreamProcedure} {
				c := e.dialH2(id)
				c.openStream(1, path)
				_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				answered := false
				for !answered {
					f, err := c.fr.ReadFrame()
					if err != nil {
						t.Fatalf("%q %s: no answer: %v", id, path, err)
					}
					switch f := f.(type) {
					case *http2.HeadersFrame:
						answered = f.StreamID == 1 && f.StreamEnded()
					case *http2.RSTStreamFrame:
						answered = f.StreamID == 1
					case *http2.DataFrame:
						answered = f.StreamID == 1 && f.StreamEnded()
					}
				}
			}
		}
	})

	t.Run("quiet producer", func(t *testing.T) {
		for _, p := range protocols {
			stream, err := e.client(idRoot, p.opts...).ProduceStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := stream.Send(&logv1.ProduceStreamRequest{Record: &logv1.Record{Value: []byte("v")}}); err != nil {
					t.Fatalf("%s: send %d: %v", p.name, i, err)
				}
				if _, err := stream.Receive(); err != nil {
					t.Fatalf("%s: ack %d: %v", p.name, i, err)
				}
				time.Sleep(3 * timeout)
			}
			if err := stream.CloseRequest(); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseResponse(); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("tail over HTTP/1.1", func(t *testing.T) {
		// A tail outlives the body timeout: its body ended at the start.
		tail := logv1connect.NewLogServiceClient(e.httpClient(idRoot, true, nil), e.url)
		stream, err := tail.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromEnd: true})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		time.Sleep(3 * timeout)
		if _, err := e.client(idRoot).Produce(t.Context(), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("late")}}); err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() {
			t.Fatalf("tail ended after the body timeout: %v", stream.Err())
		}
	})

	t.Run("slow body", func(t *testing.T) {
		// A body that keeps coming, byte by byte, for longer than the
		// timeout: an authenticated caller's goes through, an anonymous
		// caller's is cut.
		var msg []byte // WhoAmIRequest with a field it does not know
		msg = protowire.AppendTag(msg, 100, protowire.BytesType)
		msg = protowire.AppendBytes(msg, []byte("dribble"))
		for _, tt := range []struct {
			id     string
			status int
		}{{idRoot, http.StatusOK}, {idNone, http.StatusGatewayTimeout}} {
			pr, pw := io.Pipe()
			go func() {
				for i := range msg {
					time.Sleep(2 * timeout / time.Duration(len(msg)))
					if _, err := pw.Write(msg[i : i+1]); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+logv1connect.LogServiceWhoAmIProcedure, pr)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/proto")
			resp, err := e.httpClient(tt.id, false, nil).Do(req)
			if err != nil {
				t.Fatalf("%q: %v", tt.id, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pr.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%q: %s %q, want status %d", tt.id, resp.Status, body, tt.status)
			}
		}
	})

	t.Run("answer", func(t *testing.T) {
		// A body that never comes fails with DeadlineExceeded.
		for _, http1 := range []bool{true, false} {
			pr, pw := io.Pipe()
			defer pw.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+logv1connect.LogServiceWhoAmIProcedure, pr)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/proto")
			resp, err := e.httpClient(idRoot, http1, nil).Do(req)
			if err != nil {
				t.Fatalf("HTTP/1.1 %v: %v", http1, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout || !bytes.Contains(body, []byte(`"deadline_exceeded"`)) {
				t.Fatalf("HTTP/1.1 %v: a body that never came: %s %q", http1, resp.Status, body)
			}
		}
	})
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name   string
		limits service.Limits
		want   string // "" for valid
	}{
		{"zero takes defaults", service.Limits{}, ""},
		{"defaults", service.DefaultLimits(), ""},
		{"anonymous over total", service.Limits{MaxConns: 10, MaxAnonymousConns: 20}, "exceeds MaxConns"},
		{"negative", service.Limits{MaxStreams: -1}, "MaxStreams is negative"},
		{"tiny headers", service.Limits{MaxHeaderBytes: 100}, "below 4KiB"},
		{"negative timeout", service.Limits{BodyTimeout: -time.Second}, "BodyTimeout is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.limits.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
