package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
)

// Protocol is the wire protocol the client speaks.
type Protocol string

// The protocols a proglog server serves on its one port.
const (
	ProtocolConnect Protocol = "connect"
	ProtocolGRPC    Protocol = "grpc"
	ProtocolGRPCWeb Protocol = "grpcweb"
)

// Backoff spaces retries: the n-th wait is drawn between half and all of
// min(Max, Initial·2^n).
type Backoff struct {
	Initial time.Duration // default 25ms
	Max     time.Duration // default 1s
}

// Defaults for the zero fields of Config.
const (
	DefaultRetries         = 16
	DefaultInitialBackoff  = 25 * time.Millisecond
	DefaultMaxBackoff      = time.Second
	DefaultRefreshInterval = 10 * time.Second
)

// Config configures a Client. Addrs is required.
type Config struct {
	// Addrs are seed servers (host:port); any one that answers is enough
	// to discover the others.
	Addrs []string
	// TLS, when set, makes the client speak HTTPS (HTTP/2 negotiated with
	// ALPN); its NextProtos are replaced. Set RootCAs to the cluster's CA
	// and Certificates to the caller's client certificate. nil speaks
	// plaintext prior-knowledge HTTP/2 (servers run with --insecure).
	TLS *tls.Config
	// Protocol defaults to ProtocolConnect.
	Protocol Protocol
	// HTTPClient, if set, carries every call instead of the client's own
	// HTTP/2 transport. It must speak HTTP/2 to the scheme TLS implies
	// (https with TLS, http without); Close leaves it alone.
	HTTPClient connect.HTTPClient
	// Logger receives discovery and retry reports; nil discards them.
	Logger *slog.Logger
	// Backoff spaces retries.
	Backoff Backoff
	// Retries caps the attempts after the first one of each call
	// (a Tail's reconnects in a row without progress). 0 means
	// DefaultRetries; negative means no retries.
	Retries int
	// RefreshInterval is how often the client asks for GetServers while
	// nothing fails. Default 10s.
	RefreshInterval time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// TracerProvider, if set, gives every call a client span and sends
	// its W3C traceparent header, so the trace goes on on the servers
	// (tracing.New builds one from the OTEL_* environment). nil: no
	// tracing.
	TracerProvider trace.TracerProvider
	// TraceHeaders stores each produce's trace context in its records, as
	// the headers traceparent and tracestate: the context of a producer
	// span ("publish <topic>") with a TracerProvider, else that of the
	// span in the call's context, if any. Consumers find it with
	// RecordSpanContext.
	TraceHeaders bool
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Addrs) == 0 {
		return c, fmt.Errorf("%w: no seed addresses", ErrConfig)
	}
	for _, a := range c.Addrs {
		if a == "" {
			return c, fmt.Errorf("%w: empty seed address", ErrConfig)
		}
	}
	switch c.Protocol {
	case "":
		c.Protocol = ProtocolConnect
	case ProtocolConnect, ProtocolGRPC, ProtocolGRPCWeb:
	default:
		return c, fmt.Errorf("%w: unknown protocol %q (want connect, grpc or grpcweb)", ErrConfig, c.Protocol)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Backoff.Initial <= 0 {
		c.Backoff.Initial = DefaultInitialBackoff
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = max(DefaultMaxBackoff, c.Backoff.Initial)
	}
	if c.Backoff.Max < c.Backoff.Initial {
		return c, fmt.Errorf("%w: Backoff.Max %v is below Backoff.Initial %v", ErrConfig, c.Backoff.Max, c.Backoff.Initial)
	}
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
