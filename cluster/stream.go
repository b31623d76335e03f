package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/raftmux"
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
// Raft. It implements raft.StreamLayer for the node's system group; Group
// gives the stream layer of a named group on the same port.
type StreamLayer struct {
	addr    advertiseAddr
	tlsDial *tls.Config
	logger  *slog.Logger

	accept    chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex // guards conns, out, groups, isolated, noInbound and the conns' group
	conns     map[*handedConn]struct{}
	out       map[*dialedConn]struct{}
	groups    map[string]*GroupStream // the open named groups
	mux       *raftmux.Mux            // the named groups' shared connections; set once by NewStreamLayer
	isolated  bool
	noInbound bool // CloseInbound was called

	refusals refusalLog
	// unknownGroups is apart from refusals: a group starting on its nodes
	// at different moments refuses its peers for a while, which must not
	// hide a refused certificate.
	unknownGroups refusalLog
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
	s := &StreamLayer{
		addr:    advertiseAddr(advertise),
		tlsDial: cfg,
		logger:  logger,
		accept:  make(chan net.Conn),
		done:    make(chan struct{}),
		conns:   map[*handedConn]struct{}{},
		out:     map[*dialedConn]struct{}{},
		groups:  map[string]*GroupStream{},
	}
	mux, err := raftmux.New(raftmux.Config{
		Addr:   raft.ServerAddress(advertise),
		Dial:   s.dialMux,
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	s.mux = mux
	return s, nil
}

// Mux is the node's raftmux.Mux: the connections (one per peer) that
// carry every named group running with TransportMux. Its connections are
// this layer's, so Isolate, CloseInbound and Close cut them too.
func (s *StreamLayer) Mux() *raftmux.Mux { return s.mux }

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
// until Raft is done with the connection or the layer (or the connection's
// group) is closed, because net/http closes the connection when its
// TLSNextProto callback returns; it runs on net/http's goroutine for this
// connection alone, so reading the group preamble here holds up no other.
// A peer without a verified certificate for server authentication is
// refused (the connection is closed without a byte written), and so is one
// naming a group not running here (its raft retries), or sending nothing
// within preambleTimeout.
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
	g, kind, err := s.route(hc)
	if err == nil && kind != 0 {
		// The Mux's connection: Serve returns when it ends, or when the
		// layer or the Mux is closed; closing hc (Isolate, CloseInbound)
		// ends it.
		s.mux.Serve(hc, kind)
		return
	}
	if err != nil {
		switch {
		case isClosed(hc.closed): // closed here (Close, Isolate) while it was read
		case errors.As(err, new(unknownGroupError)):
			s.unknownGroups.log(s.logger, conn.RemoteAddr().String(), err.Error())
		default:
			s.refusals.log(s.logger, conn.RemoteAddr().String(), err.Error())
		}
		hc.Close()
		return
	}
	accept, groupDone := s.accept, (<-chan struct{})(nil) // nil: the system group ends with the layer
	if g != nil {
		accept, groupDone = g.accept, g.done
	}
	select {
	case accept <- hc:
	case <-hc.closed: // Isolate, CloseInbound or the group's Close
		return
	case <-groupDone:
		hc.Close()
		return
	case <-s.done:
		hc.Close()
		return
	}
	select {
	case <-hc.closed:
	case <-groupDone:
		hc.Close()
	case <-s.done:
		hc.Close()
	}
}

// route reads what an inbound connection starts with and returns the named
// group it is for, or nil for the system group, or the raftmux.Kind of a
// Mux connection: a connection without a preamble is the system group's,
// and the byte read to tell is put back for raft to read.
func (s *StreamLayer) route(hc *handedConn) (*GroupStream, raftmux.Kind, error) {
	conn := hc.Conn
	if err := conn.SetReadDeadline(time.Now().Add(preambleTimeout)); err != nil {
		return nil, 0, err
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return nil, 0, fmt.Errorf("read the first byte: %w", err)
	}
	var g *GroupStream
	if first[0] != preambleMagic {
		hc.unread = first[:]
	} else {
		name, kind, err := readPreamble(io.MultiReader(bytes.NewReader(first[:]), conn))
		if err != nil {
			return nil, 0, err
		}
		if kind != 0 {
			if err := conn.SetReadDeadline(time.Time{}); err != nil {
				return nil, 0, err
			}
			return nil, kind, nil
		}
		s.mu.Lock()
		if g = s.groups[name]; g != nil {
			hc.group = g // from now on the group's Close closes it
		}
		s.mu.Unlock()
		if g == nil {
			return nil, 0, unknownGroupError{name}
		}
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, 0, err
	}
	return g, 0, nil
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

// Close stops accepting, ends every Raft connection in either direction, of
// every group, and makes Handoff return; the named groups' Accept fails too.
// It is safe to call more than once.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		conns := s.connsLocked(true, true)
		s.mu.Unlock()
		closeAll(conns)
		s.mux.Close()
	})
	return nil
}

// CloseInbound ends the Raft connections peers opened to this node, of
// every group, and refuses new ones, while this node's own dials go on.
// net/http's Shutdown waits for connections handed off here, so a node that
// stops serving its port calls this first, and can still hand leadership
// over and leave.
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

// Dial opens a Raft connection to a peer's TLS port, for the system group.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(nil, nil, address, timeout)
}

// dialMux opens a connection of kind for the Mux.
func (s *StreamLayer) dialMux(address raft.ServerAddress, kind raftmux.Kind, timeout time.Duration) (net.Conn, error) {
	return s.dial(nil, appendMuxPreamble(nil, kind), address, timeout)
}

// dial opens a Raft connection for group g (nil: the system group, which
// sends no preamble, or the Mux, whose preamble is given).
func (s *StreamLayer) dial(g *GroupStream, preamble []byte, address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	err := s.dialableLocked(g)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, err)
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: raft address %q: %w", address, err)
	}
	name := s.tlsDial.ServerName
	if name == "" {
		name = host
	}
	// WithServerName: a dial config that verifies against a reloaded CA
	// (pki.Reloader.DialConfig) learns the name that way.
	cfg := pki.WithServerName(s.tlsDial, name)
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
	if g != nil {
		preamble = appendPreamble(nil, g.name)
	}
	if preamble != nil {
		// Sent within the dial's timeout. A TLS conn whose write timed out
		// is unusable; it is closed with the rest.
		deadline, _ := ctx.Deadline()
		err := tc.SetWriteDeadline(deadline)
		if err == nil {
			_, err = tc.Write(preamble)
		}
		if err == nil {
			err = tc.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			tc.Close()
			return nil, fmt.Errorf("cluster: send the raft preamble % x to %s: %w", preamble, address, err)
		}
	}
	dc := &dialedConn{Conn: tc, layer: s, group: g}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked again: Isolate or a Close while dialing would miss this conn.
	if err := s.dialableLocked(g); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster: dial raft peer %s: %w", address, err)
	}
	s.out[dc] = struct{}{}
	return dc, nil
}

// dialableLocked says why group g (nil: the system group) may not dial
// now, if it may not. Caller holds mu.
func (s *StreamLayer) dialableLocked(g *GroupStream) error {
	switch {
	case s.isolated:
		return errIsolated
	case isClosed(s.done), g != nil && isClosed(g.done):
		return net.ErrClosed
	}
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

var errIsolated = errors.New("isolated by fault injection")

// Isolate cuts this node off from its Raft peers (on) or reconnects it
// (off): every Raft connection in either direction, of every group, is
// closed and new ones are refused, while the node's other traffic on the
// port goes on. It exists for fault-injection tests and drills; a healthy
// node never calls it.
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
	group *GroupStream // nil: the system group
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
	group  *GroupStream // nil: the system group, or not routed yet; guarded by layer.mu
	// unread is what route read to tell the group and raft must read first;
	// only raft's goroutine reads the conn once it is handed over.
	unread []byte
}

func (c *handedConn) Read(p []byte) (int, error) {
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		c.unread = c.unread[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *handedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}
