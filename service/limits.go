package service

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Limits bound what one caller can make the server hold: connections,
// HTTP/2 streams, header bytes and the time a request may take to arrive.
// Anonymous connections (a TLS handshake without a verified client
// certificate) get tighter limits than authenticated ones, since they can
// come from anyone who reaches the port. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxConns caps all open connections, counted from accept, TLS
	// handshakes and Raft's included; beyond it new ones are closed at once.
	MaxConns int
	// MaxAnonymousConns caps connections whose TLS handshake presented no
	// verified client certificate. Connections that negotiated a Handoffs
	// protocol (Raft) are never counted nor refused by it.
	MaxAnonymousConns int
	// MaxStreams and MaxAnonymousStreams cap concurrent HTTP/2 streams
	// (requests) per connection.
	MaxStreams, MaxAnonymousStreams int
	// MaxHeaderBytes caps a request's decoded headers (HTTP/1.1 and
	// HTTP/2); anonymous HTTP/2 connections get at most anonymousHeaderBytes.
	MaxHeaderBytes int
	// HandshakeTimeout bounds a TLS handshake and, on HTTP/1.1, reading a
	// request's headers.
	HandshakeTimeout time.Duration
	// BodyTimeout bounds the arrival of a request body: the whole body of
	// unary calls, the first message of client streams (ProduceStream,
	// reflection), whose later messages may be minutes apart. A body that
	// misses it fails to read and the call ends with DeadlineExceeded. For
	// authenticated callers it bounds the pauses between pieces of the body.
	BodyTimeout time.Duration
	// IdleTimeout closes a connection with no request in flight.
	IdleTimeout time.Duration
}

// DefaultLimits are the limits serve uses unless told otherwise. With
// them, anonymous callers cannot push the server past about 150 MB of RSS
// (see doc.go, "Limits").
func DefaultLimits() Limits {
	return Limits{
		MaxConns:            1024,
		MaxAnonymousConns:   128,
		MaxStreams:          250,
		MaxAnonymousStreams: 8,
		MaxHeaderBytes:      64 << 10,
		HandshakeTimeout:    10 * time.Second,
		BodyTimeout:         10 * time.Second,
		IdleTimeout:         2 * time.Minute,
	}
}

// Fixed limits of anonymous HTTP/2 connections. Anonymous callers reach
// only health checks, WhoAmI and the dashboard's files, which need neither
// large headers nor large flow-control windows.
const (
	anonymousHeaderBytes  = 16 << 10
	anonymousReceiveBytes = 64 << 10 // per connection, the smallest HTTP/2 allows
)

// maxContinuationFrames caps the CONTINUATION frames of one HTTP/2 header
// block. Real clients fill frames (16 KiB and up), so 128 carry any header
// block the header limits accept; an endless run of (empty) frames is an
// attack that net/http does not cut by itself.
const maxContinuationFrames = 128

// set gives *v the default def when it is zero.
func set[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxAnonymousConns, d.MaxAnonymousConns)
	set(&l.MaxStreams, d.MaxStreams)
	set(&l.MaxAnonymousStreams, d.MaxAnonymousStreams)
	set(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	set(&l.HandshakeTimeout, d.HandshakeTimeout)
	set(&l.BodyTimeout, d.BodyTimeout)
	set(&l.IdleTimeout, d.IdleTimeout)
	return l
}

// Validate reports limits that contradict each other or the protocol.
func (l Limits) Validate() error {
	l = l.withDefaults()
	var errs []error
	for _, v := range []struct {
		name string
		n    int
	}{
		{"MaxConns", l.MaxConns}, {"MaxAnonymousConns", l.MaxAnonymousConns},
		{"MaxStreams", l.MaxStreams}, {"MaxAnonymousStreams", l.MaxAnonymousStreams},
		{"MaxHeaderBytes", l.MaxHeaderBytes},
	} {
		if v.n < 0 {
			errs = append(errs, fmt.Errorf("%s is negative", v.name))
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"HandshakeTimeout", l.HandshakeTimeout}, {"BodyTimeout", l.BodyTimeout}, {"IdleTimeout", l.IdleTimeout}} {
		if v.d < 0 {
			errs = append(errs, fmt.Errorf("%s is negative", v.name))
		}
	}
	if l.MaxAnonymousConns > l.MaxConns {
		errs = append(errs, fmt.Errorf("MaxAnonymousConns (%d) exceeds MaxConns (%d)", l.MaxAnonymousConns, l.MaxConns))
	}
	if l.MaxHeaderBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("MaxHeaderBytes (%d) is below 4KiB", l.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// aeadSuites are the TLS 1.2 cipher suites offered: ECDHE with AES-GCM or
// ChaCha20-Poly1305 only (no CBC, no RSA key exchange). TLS 1.3 suites are
// all AEAD and not configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
