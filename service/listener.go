package service

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connClass is what a TLS handshake showed about a connection.
type connClass int

const (
	classAnonymous connClass = iota // no verified client certificate
	classAuthenticated
	classHandoff   // negotiated a Handoffs protocol (Raft)
	classHandshake // not known yet: the handshake is under way
)

func (c connClass) String() string {
	return [...]string{"anonymous", "authenticated", "handoff", "handshake"}[c]
}

func classify(cs tls.ConnectionState, handoffs map[string]func(*tls.Conn)) connClass {
	if _, ok := handoffs[cs.NegotiatedProtocol]; ok && cs.NegotiatedProtocol != "" {
		return classHandoff
	}
	if len(cs.VerifiedChains) > 0 {
		return classAuthenticated
	}
	return classAnonymous
}

// gate is the TLS listener in front of the http.Server. It caps open
// connections (from accept), does each TLS handshake under a deadline in
// its own goroutine, and then caps anonymous connections, so that a
// refused anonymous caller costs a handshake and nothing after it. Serve
// receives only connections whose handshake succeeded, still as *tls.Conn
// (net/http dispatches by ALPN on that type); they are released from the
// counts by release, from http.Server.ConnState, when net/http closes them.
type gate struct {
	inner    net.Listener
	tls      *tls.Config
	handoffs map[string]func(*tls.Conn)
	limits   Limits
	logger   *slog.Logger
	metrics  *connMetrics

	ready  chan net.Conn
	ctx    context.Context // cancelled by Close and when accepting fails
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the handshakes

	mu        sync.Mutex // guards the fields below
	open      int        // connections accepted and not yet released
	anonymous int        // of which anonymous, after their handshake
	classes   map[net.Conn]connClass
	pending   map[net.Conn]struct{} // in their handshake: Close closes them
	closed    bool
	acceptErr error // why the accept loop stopped
}

func newGate(inner net.Listener, cfg *tls.Config, handoffs map[string]func(*tls.Conn), limits Limits, logger *slog.Logger, m *connMetrics) *gate {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gate{inner: inner, tls: cfg, handoffs: handoffs, limits: limits, logger: logger, metrics: m,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel,
		classes: map[net.Conn]connClass{}, pending: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.acceptLoop()
	return g
}

func (g *gate) acceptLoop() {
	defer g.wg.Done()
	var delay time.Duration
	for {
		raw, err := g.inner.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && g.ctx.Err() == nil {
				// Out of file descriptors and the like: back off and retry,
				// as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				g.logger.Warn("accepting a connection failed; retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-g.ctx.Done():
				}
			}
			g.mu.Lock()
			g.acceptErr = err
			g.mu.Unlock()
			g.cancel()
			return
		}
		delay = 0
		if !g.admit(raw) {
			g.metrics.refused.WithLabelValues(refusedMaxConns).Inc()
			g.logger.Debug("connection refused: too many connections", "remote", raw.RemoteAddr().String(), "max", g.limits.MaxConns)
			_ = raw.Close()
			continue
		}
		g.wg.Add(1)
		go g.handshake(raw)
	}
}

// admit counts a new connection unless MaxConns are open.
func (g *gate) admit(raw net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.open >= g.limits.MaxConns {
		return false
	}
	g.open++
	g.pending[raw] = struct{}{}
	g.metrics.open.WithLabelValues(classHandshake.String()).Inc()
	return true
}

// handshake runs under a deadline on the connection rather than a
// context, which would cost a goroutine per handshake; Close unblocks it
// by closing the connection.
func (g *gate) handshake(raw net.Conn) {
	defer g.wg.Done()
	conn := tls.Server(raw, g.tls)
	_ = raw.SetDeadline(time.Now().Add(g.limits.HandshakeTimeout))
	err := conn.Handshake()
	_ = raw.SetDeadline(time.Time{})
	g.mu.Lock()
	delete(g.pending, raw)
	g.metrics.open.WithLabelValues(classHandshake.String()).Dec()
	if g.closed && err == nil {
		err = net.ErrClosed
	}
	g.mu.Unlock()
	if err != nil {
		// Certificates from another CA and port scanners end here.
		g.metrics.refused.WithLabelValues(refusedHandshake).Inc()
		g.logger.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		g.drop(conn)
		return
	}
	class := classify(conn.ConnectionState(), g.handoffs)
	g.mu.Lock()
	if class == classAnonymous && g.anonymous >= g.limits.MaxAnonymousConns {
		g.mu.Unlock()
		g.metrics.refused.WithLabelValues(refusedMaxAnonymous).Inc()
		g.logger.Debug("connection refused: too many anonymous connections", "remote", raw.RemoteAddr().String(), "max", g.limits.MaxAnonymousConns)
		g.drop(conn)
		return
	}
	if class == classAnonymous {
		g.anonymous++
	}
	g.classes[conn] = class
	g.metrics.open.WithLabelValues(class.String()).Inc()
	g.mu.Unlock()
	select {
	case g.ready <- conn:
	case <-g.ctx.Done():
		g.release(conn)
		_ = conn.Close()
	}
}

// drop closes a connection that never reached Serve.
func (g *gate) drop(conn net.Conn) {
	_ = conn.Close()
	g.mu.Lock()
	g.open--
	g.mu.Unlock()
}

// release forgets a connection Accept returned; net/http reports it closed.
func (g *gate) release(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	class, ok := g.classes[c]
	if !ok {
		return
	}
	delete(g.classes, c)
	g.open--
	if class == classAnonymous {
		g.anonymous--
	}
	g.metrics.open.WithLabelValues(class.String()).Dec()
}

// connState releases connections as net/http closes them.
func (g *gate) connState(c net.Conn, state http.ConnState) {
	if state == http.StateClosed || state == http.StateHijacked {
		g.release(c)
	}
}

func (g *gate) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.ctx.Done():
		g.mu.Lock()
		err := g.acceptErr
		g.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return nil, err
	}
}

// Close stops accepting, ends pending handshakes and waits for them.
func (g *gate) Close() error {
	g.mu.Lock()
	g.closed = true
	for c := range g.pending {
		_ = c.Close()
	}
	g.mu.Unlock()
	err := g.inner.Close()
	g.cancel()
	g.wg.Wait()
	return err
}

func (g *gate) Addr() net.Addr { return g.inner.Addr() }
