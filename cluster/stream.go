package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ALPN is the TLS application protocol Raft traffic uses on the node's
// single TLS port. The server's tls.Config must list it in NextProtos and its
// http.Server must route it to StreamLayer.Handoff (see Register).
const ALPN = "proglog-raft"

// StreamLayer carries Raft's connections over the node's TLS port. Inbound
// connections arrive through Handoff from the HTTP server's TLSNextProto
// callback; outbound ones are dialed with the node's server certificate as
// the client certificate. Only peers whose verified certificate is good for
// server authentication are accepted, so a client certificate cannot speak
// Raft. It implements raft.StreamLayer.
type StreamLayer struct {
	addr   advertiseAddr
	dial   *tls.Config
	logger *slog.Logger

	accept    chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex // guards conns, out, isolated, noInbound
	conns     map[*handedConn]struct{}
	out       map[*dialedConn]struct{}
	isolated  bool
	noInbound bool // CloseInbound was called

	refusals refusalLog
}

// refusalLog logs refused Raft connections at most once per refusalEvery,
// with the count of those it did not log: anyone can ask for the Raft ALPN
// protocol, and a log line for each would let them flood the log.
type refusalLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const refusalEvery = 10 * time.Second

func (r *refusalLog) log(logger *slog.Logger, remote, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.last) >= refusalEvery {
		logger.Warn("cluster: refused raft connection", "remote", remote, "reason", reason, "refused_unlogged", r.suppressed)
		r.last, r.suppressed = now, 0
		return
	}
	r.suppressed++
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer makes a stream layer for the node reachable at advertise
// (host:port of its TLS port, which is also its Raft address). dial must hold
// the node's server certificate (Certificates) and the CA (RootCAs); its
// NextProtos are replaced by ALPN.
func NewStreamLayer(advertise string, dial *tls.Config, logger *slog.Logger) (*StreamLayer, error) {
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return nil, fmt.Errorf("cluster: advertise address %q: %w", advertise, err)
	}
	if dial == nil || len(dial.Certificates) == 0 || dial.RootCAs == nil {
		return nil, errors.New("cluster: the raft dial TLS config needs the node's certificate and the CA")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := dial.Clone()
	cfg.NextProtos = []string{ALPN}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return &StreamLayer{
		addr:   advertiseAddr(advertise),
		dial:   cfg,
		logger: logger,
		accept: make(chan net.Conn),
		done:   make(chan struct{}),
		conns:  map[*handedConn]struct{}{},
		out:    map[*dialedConn]struct{}{},
	}, nil
}

// Register routes ALPN connections of srv to Handoff. srv.Protocols must be
// set explicitly (a non-nil TLSNextProto otherwise turns HTTP/2 off), and
// srv's TLS config must list ALPN in NextProtos.
func (s *StreamLayer) Register(srv *http.Server) {
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	srv.TLSNextProto[ALPN] = func(_ *http.Server, c *tls.Conn, _ http.Handler) { s.Handoff(c) }
}

// Handoff takes an inbound TLS connection that negotiated ALPN. It blocks
// until Raft is done with the connection or the layer is closed, because
// net/http closes the connection when its TLSNextProto callback returns. A
// peer without a verified certificate for server authentication is refused
// (the connection is closed without a byte written).
func (s *StreamLayer) Handoff(conn *tls.Conn) {
	state := conn.ConnectionState()
	if err := checkPeer(state); err != nil {
		s.refusals.log(s.logger, conn.RemoteAddr().String(), err.Error())
		conn.Close()
		return
	}
	hc := &handedConn{Conn: conn, closed: make(chan struct{})}
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		conn.Close()
		return
	default:
	}
	if s.isolated || s.noInbound {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[hc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, hc)
		s.mu.Unlock()
	}()
	select {
	case s.accept <- hc:
	case <-s.done:
		hc.Close()
		return
	}
	select {
	case <-hc.closed:
	case <-s.done:
		hc.Close()
	}
}

// checkPeer accepts only a verified certificate good for server authentication.
func checkPeer(state tls.ConnectionState) error {
	if state.NegotiatedProtocol != ALPN {
		return fmt.Errorf("negotiated protocol %q, want %q", state.NegotiatedProtocol, ALPN)
	}
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return errors.New("no verified certificate")
	}
	leaf := state.VerifiedChains[0][0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("certificate %q is not a server certificate", leaf.Subject.CommonName)
	}
	return nil
}

// Accept waits for the next inbound Raft connection.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.accept:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, ends every Raft connection in either direction and
// makes Handoff return. It is safe to call more than once.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		conns := s.connsLocked(true, true)
		s.mu.Unlock()
		closeAll(conns)
	})
	return nil
}

// CloseInbound ends the Raft connections peers opened to this node and
// refuses new ones, while this node's own dials go on. net/http's Shutdown
// waits for connections handed off here, so a node that stops serving its
// port calls this first, and can still hand leadership over and leave.
func (s *StreamLayer) CloseInbound() {
	s.mu.Lock()
	s.noInbound = true
	conns := s.connsLocked(true, false)
	s.mu.Unlock()
	closeAll(conns)
}

// connsLocked lists the open Raft connections peers opened (inbound) and
// this node dialed (outbound). Caller holds mu.
func (s *StreamLayer) connsLocked(inbound, outbound bool) []net.Conn {
	var conns []net.Conn
	if inbound {
		for c := range s.conns {
			conns = append(conns, c)
		}
	}
	if outbound {
		for c := range s.out {
			conns = append(conns, c)
		}
	}
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// Addr is the advertised address, which Raft uses as this node's address.
func (s *StreamLayer) Addr() net.Addr { return s.addr }

// Dial opens a Raft connection to a peer's TLS port.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	isolated := s.isolated
	s.mu.Unlock()
	if isolated {
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, errIsolated)
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: raft address %q: %w", address, err)
	}
	cfg := s.dial.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, err)
	}
	tc := c.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		tc.Close()
		return nil, fmt.Errorf("cluster: raft peer %s negotiated %q, not %q", address, p, ALPN)
	}
	dc := &dialedConn{Conn: tc, layer: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isolated {
		tc.Close()
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, errIsolated)
	}
	s.out[dc] = struct{}{}
	return dc, nil
}

var errIsolated = errors.New("isolated by fault injection")

// Isolate cuts this node off from its Raft peers (on) or reconnects it
// (off): every Raft connection in either direction is closed and new ones
// are refused, while the node's other traffic on the port goes on. It
// exists for fault-injection tests and drills; a healthy node never calls it.
func (s *StreamLayer) Isolate(on bool) {
	s.mu.Lock()
	s.isolated = on
	var conns []net.Conn
	if on {
		conns = s.connsLocked(true, true)
	}
	s.mu.Unlock()
	closeAll(conns)
}

// dialedConn leaves the layer's set of outbound connections when closed.
type dialedConn struct {
	net.Conn
	layer *StreamLayer
	once  sync.Once
}

func (c *dialedConn) Close() error {
	c.once.Do(func() {
		c.layer.mu.Lock()
		delete(c.layer.out, c)
		c.layer.mu.Unlock()
	})
	return c.Conn.Close()
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// handedConn tells Handoff when Raft closes the connection.
type handedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *handedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}
