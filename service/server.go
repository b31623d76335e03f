package service

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Handler http.Handler
	// TLS serves HTTP/1.1 and HTTP/2 over TLS; nil serves plaintext
	// HTTP/1.1 and prior-knowledge HTTP/2 (h2c), for --insecure.
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
}

// Server runs one http.Server for everything on one listener. Shutdown
// cancels the context of every request, so live tails end at once instead
// of holding the shutdown until its deadline.
type Server struct {
	srv    *http.Server
	logger *slog.Logger
	tls    bool
}

// Timeouts of the http.Server. There is deliberately no ReadTimeout or
// WriteTimeout: they would cut long-lived streams. Slow consumers are
// handled per stream (Config.SlowConsumerTimeout), dead peers by HTTP/2
// pings.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	pingInterval      = 30 * time.Second
	pingTimeout       = 15 * time.Second
)

// NewServer builds a Server for cfg.Handler.
func NewServer(cfg ServerConfig) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
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
		if !slices.Contains(tlsConfig.NextProtos, "h2") {
			tlsConfig.NextProtos = append([]string{"h2"}, tlsConfig.NextProtos...)
		}
		if !slices.Contains(tlsConfig.NextProtos, "http/1.1") {
			tlsConfig.NextProtos = append(tlsConfig.NextProtos, "http/1.1")
		}
		for proto, handoff := range cfg.Handoffs {
			if nextProto == nil {
				// Protocols keeps HTTP/2 on although TLSNextProto is set.
				nextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
			}
			if !slices.Contains(tlsConfig.NextProtos, proto) {
				tlsConfig.NextProtos = append(tlsConfig.NextProtos, proto)
			}
			nextProto[proto] = func(_ *http.Server, conn *tls.Conn, _ http.Handler) { handoff(conn) }
		}
	}
	srv := &http.Server{
		Handler:           cfg.Handler,
		TLSConfig:         tlsConfig,
		TLSNextProto:      nextProto,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000,
			// Larger windows than the 1 MiB default keep a pipelined
			// ProduceStream from stalling on flow control; memory per
			// connection stays bounded by them.
			MaxReceiveBufferPerStream:     4 << 20,
			MaxReceiveBufferPerConnection: 8 << 20,
			SendPingTimeout:               pingInterval,
			PingTimeout:                   pingTimeout,
		},
		BaseContext: func(net.Listener) context.Context { return base },
		// TLS handshake failures (a certificate from another CA, port
		// scanners) are logged at debug.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(func() { cancel(ErrShuttingDown) })
	if cfg.OnShutdown != nil {
		srv.RegisterOnShutdown(cfg.OnShutdown)
	}
	return &Server{srv: srv, logger: logger, tls: cfg.TLS != nil}
}

// Serve serves connections from ln until Shutdown, then returns
// http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	if !s.tls {
		s.logger.Warn("serving WITHOUT TLS: every caller is anonymous and traffic is readable on the network",
			slog.String("addr", ln.Addr().String()))
		return s.srv.Serve(ln)
	}
	return s.srv.ServeTLS(ln, "", "")
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
