package service

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Handler http.Handler
	// TLS serves HTTP/1.1 and HTTP/2 over TLS; nil serves plaintext
	// HTTP/1.1 and prior-knowledge HTTP/2 (h2c), for --insecure. Its
	// GetConfigForClient, if set (pki.Reloader.ServerConfig's), supplies
	// the certificate and client CAs of each handshake; versions, cipher
	// suites and protocols stay the server's.
	TLS    *tls.Config
	Logger *slog.Logger
	// Handoffs serves other protocols on the same TLS port, chosen by
	// ALPN (e.g. "proglog-raft"): the TLS connection of a client that
	// negotiated the protocol is passed to its function, which must block
	// until it is done with the connection (net/http closes it on return).
	// net/http counts these connections as active, so Shutdown waits for
	// them: close them from OnShutdown. Ignored without TLS.
	Handoffs map[string]func(*tls.Conn)
	// OnShutdown, if set, runs when Shutdown starts (in its own goroutine),
	// e.g. to close the listener behind Handoffs.
	OnShutdown func()
	// Limits bound connections, streams, headers and slow requests; zero
	// fields take DefaultLimits. The connection limits need TLS.
	Limits Limits
	// Registerer, if set, gets the connection metrics
	// (proglog_server_connections, proglog_server_refused_connections_total).
	Registerer prometheus.Registerer
}

// Server runs one http.Server for everything on one listener. Shutdown
// cancels the context of every request, so live tails end at once instead
// of holding the shutdown until its deadline.
type Server struct {
	srv      *http.Server
	logger   *slog.Logger
	tls      *tls.Config // nil without TLS
	handoffs map[string]func(*tls.Conn)
	limits   Limits
	metrics  *connMetrics
}

// Timeouts of the http.Server besides Limits. There is deliberately no
// ReadTimeout or WriteTimeout: they would cut long-lived streams. Slow
// request bodies are cut per request (Limits.BodyTimeout), slow consumers
// per stream (Config.SlowConsumerTimeout), dead peers by HTTP/2 pings.
const (
	pingInterval = 30 * time.Second
	pingTimeout  = 15 * time.Second
)

// NewServer builds a Server for cfg.Handler.
func NewServer(cfg ServerConfig) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	limits := cfg.Limits.withDefaults()
	m, err := newConnMetrics(cfg.Registerer)
	if err != nil {
		logger.Warn("connection metrics not exported", "err", err)
	}
	base, cancel := context.WithCancelCause(context.Background())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if cfg.TLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	var (
		tlsConfig *tls.Config
		nextProto map[string]func(*http.Server, *tls.Conn, http.Handler)
	)
	if cfg.TLS != nil {
		tlsConfig = cfg.TLS.Clone()
		tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
		tlsConfig.CipherSuites = aeadSuites
		if !slices.Contains(tlsConfig.NextProtos, "h2") {
			tlsConfig.NextProtos = append([]string{"h2"}, tlsConfig.NextProtos...)
		}
		if !slices.Contains(tlsConfig.NextProtos, "http/1.1") {
			tlsConfig.NextProtos = append(tlsConfig.NextProtos, "http/1.1")
		}
		// configureH2 adds "h2".
		nextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		for proto, handoff := range cfg.Handoffs {
			if !slices.Contains(tlsConfig.NextProtos, proto) {
				tlsConfig.NextProtos = append(tlsConfig.NextProtos, proto)
			}
			nextProto[proto] = func(_ *http.Server, conn *tls.Conn, _ http.Handler) { handoff(conn) }
		}
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	srv := &http.Server{
		Handler:           bodyDeadline(cfg.Handler, limits.BodyTimeout),
		TLSConfig:         tlsConfig,
		TLSNextProto:      nextProto,
		Protocols:         &protocols,
		ReadHeaderTimeout: limits.HandshakeTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: limits.MaxStreams,
			// Larger windows than the 1 MiB default keep a pipelined
			// ProduceStream from stalling on flow control; memory per
			// connection stays bounded by them.
			MaxReceiveBufferPerStream:     4 << 20,
			MaxReceiveBufferPerConnection: 8 << 20,
			SendPingTimeout:               pingInterval,
			PingTimeout:                   pingTimeout,
		},
		BaseContext: func(net.Listener) context.Context { return base },
		// Protocol errors of clients are logged at debug.
		ErrorLog: errorLog,
	}
	srv.RegisterOnShutdown(func() { cancel(ErrShuttingDown) })
	if cfg.OnShutdown != nil {
		srv.RegisterOnShutdown(cfg.OnShutdown)
	}
	if tlsConfig != nil {
		// The HTTP/2 settings of anonymous connections; it never serves.
		anonBase := &http.Server{
			IdleTimeout:    limits.IdleTimeout,
			MaxHeaderBytes: min(limits.MaxHeaderBytes, anonymousHeaderBytes),
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams:          limits.MaxAnonymousStreams,
				MaxReceiveBufferPerStream:     anonymousReceiveBytes,
				MaxReceiveBufferPerConnection: anonymousReceiveBytes,
				SendPingTimeout:               pingInterval,
				PingTimeout:                   pingTimeout,
			},
			ErrorLog: errorLog,
		}
		if err := configureH2(srv, anonBase, logger, m); err != nil {
			// Only a TLS config HTTP/2 cannot use, and ours is fixed above.
			panic(err)
		}
		if get := tlsConfig.GetConfigForClient; get != nil {
			tlsConfig.GetConfigForClient = identityOnly(tlsConfig, get)
		}
	}
	return &Server{srv: srv, logger: logger, tls: tlsConfig, handoffs: cfg.Handoffs, limits: limits, metrics: m}
}

// identityOnly wraps the GetConfigForClient of ServerConfig.TLS (a
// pki.Reloader's, which swaps certificates and CAs as their files change):
// each handshake takes from the config it returns the server's
// certificate and the client CAs (Certificates, GetCertificate, ClientCAs,
// ClientAuth) and everything else from base, the server's own config with
// its versions, cipher suites and protocols. The config it makes is kept
// while get returns the same one, which a Reloader does until it reloads.
func identityOnly(base *tls.Config, get func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	tmpl := base.Clone()
	tmpl.GetConfigForClient = nil
	type made struct{ from, to *tls.Config }
	var last atomic.Pointer[made]
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		from, err := get(hello)
		if err != nil || from == nil {
			return nil, err // nil: the handshake goes on with base
		}
		if m := last.Load(); m != nil && m.from == from {
			return m.to, nil
		}
		to := tmpl.Clone()
		to.Certificates, to.GetCertificate = from.Certificates, from.GetCertificate
		to.ClientCAs, to.ClientAuth = from.ClientCAs, from.ClientAuth
		last.Store(&made{from, to})
		return to, nil
	}
}

// Serve serves connections from ln until Shutdown, then returns
// http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	if s.tls == nil {
		s.logger.Warn("serving WITHOUT TLS: every caller is anonymous and traffic is readable on the network",
			slog.String("addr", ln.Addr().String()))
		return s.srv.Serve(ln)
	}
	g := newGate(ln, s.tls, s.handoffs, s.limits, s.logger, s.metrics)
	s.srv.ConnState = g.connState
	return s.srv.Serve(g)
}

// Shutdown stops accepting connections, ends live tails (their request
// contexts are cancelled with ErrShuttingDown), lets in-flight produces
// finish and waits for them, until ctx is done; then it closes every
// connection and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		_ = s.srv.Close()
	}
	return err
}
