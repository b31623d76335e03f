package service

//lint:file-ignore SA1019 the deprecated x/net/http2 server is used on purpose: see h2Servers

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
)

// HTTP/2 over TLS is served by golang.org/x/net/http2's ServeConn rather
// than net/http's bundled copy of the same code, for the two things
// net/http cannot do per connection: settings by caller class (anonymous
// connections get fewer streams, smaller headers and windows), and
// reading the connection through frameGuard, which cuts endless
// CONTINUATION runs. Both servers take their settings from the
// http.Server they are given as BaseConfig (http.Server.HTTP2 and
// MaxHeaderBytes), and are registered with the serving http.Server so that
// its Shutdown sends them GOAWAY.
//
// The x/net API is marked deprecated in favour of http.Server, which has
// no per-connection hook in Go 1.26; from Go 1.27 x/net serves it with
// net/http's own implementation.
type h2Servers struct {
	authenticated, anonymous h2Class
	logger                   *slog.Logger
	refused                  prometheus.Counter // continuation floods
}

type h2Class struct {
	srv  *http2.Server
	base *http.Server // settings only; never serves
}

// configureH2 installs the HTTP/2 servers in srv.TLSNextProto["h2"].
// anonBase holds the settings of anonymous connections.
func configureH2(srv, anonBase *http.Server, logger *slog.Logger, m *connMetrics) error {
	h := &h2Servers{
		authenticated: h2Class{srv: &http2.Server{}, base: srv},
		anonymous:     h2Class{srv: &http2.Server{}, base: anonBase},
		logger:        logger,
		refused:       m.refused.WithLabelValues(refusedContinuation),
	}
	for _, c := range []h2Class{h.authenticated, h.anonymous} {
		// Registers c.srv for graceful shutdown and sets its idle timeout
		// from srv. The TLSNextProto entry it installs is replaced below.
		if err := http2.ConfigureServer(srv, c.srv); err != nil {
			return err
		}
	}
	srv.TLSNextProto["h2"] = h.serve
	return nil
}

// serve runs one HTTP/2 connection with its class's settings.
func (h *h2Servers) serve(_ *http.Server, conn *tls.Conn, handler http.Handler) {
	c := h.authenticated
	if classify(conn.ConnectionState(), nil) == classAnonymous {
		c = h.anonymous
	}
	// net/http passes its per-connection base context through the handler.
	type baseContexter interface{ BaseContext() context.Context }
	opts := &http2.ServeConnOpts{Handler: handler, BaseConfig: c.base}
	if bc, ok := handler.(baseContexter); ok {
		opts.Context = bc.BaseContext()
	}
	c.srv.ServeConn(&frameGuard{Conn: conn, skip: len(http2.ClientPreface), logger: h.logger, refused: h.refused}, opts)
}

// errContinuationFlood ends a connection whose header block runs past
// maxContinuationFrames CONTINUATION frames.
var errContinuationFlood = errors.New("service: HTTP/2 header block split into too many CONTINUATION frames")

// frameGuard reads an HTTP/2 connection on the server's behalf and follows
// its frame boundaries, to count the CONTINUATION frames of each header
// block. It implements ConnectionState (from *tls.Conn), so requests keep
// their TLS state (r.TLS) and the client's identity.
type frameGuard struct {
	*tls.Conn
	logger  *slog.Logger
	refused prometheus.Counter

	// Read is only called by the connection's one frame-reading goroutine.
	skip      int     // bytes before the next frame header (preface, payload)
	hdr       [9]byte // the frame header being read
	hdrLen    int
	continued int // CONTINUATION frames since the last HEADERS or PUSH_PROMISE
}

const (
	frameHeaders      = 0x1
	framePushPromise  = 0x5
	frameContinuation = 0x9
)

func (g *frameGuard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if ferr := g.scan(p[:n]); ferr != nil {
		g.refused.Inc()
		g.logger.Debug("closing HTTP/2 connection", "remote", g.RemoteAddr().String(), "err", ferr)
		_ = g.Conn.Close()
		return 0, ferr
	}
	return n, err
}

// scan advances the frame parser over b.
func (g *frameGuard) scan(b []byte) error {
	for len(b) > 0 {
		if g.skip > 0 {
			k := min(g.skip, len(b))
			g.skip -= k
			b = b[k:]
			continue
		}
		k := copy(g.hdr[g.hdrLen:], b)
		g.hdrLen += k
		b = b[k:]
		if g.hdrLen < len(g.hdr) {
			return nil
		}
		g.hdrLen = 0
		length := int(binary.BigEndian.Uint32(g.hdr[0:4]) >> 8)
		// net/http rejects a CONTINUATION that does not follow its block,
		// so counting since the block's first frame is enough.
		switch g.hdr[3] {
		case frameHeaders, framePushPromise:
			g.continued = 0
		case frameContinuation:
			g.continued++
			if g.continued > maxContinuationFrames {
				return fmt.Errorf("%w (%d)", errContinuationFlood, g.continued)
			}
		}
		g.skip = length
	}
	return nil
}
