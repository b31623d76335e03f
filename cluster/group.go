package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/raftmux"
)

// GroupStream carries the connections of one named Raft group over its
// node's StreamLayer: same port, same ALPN, same certificate checks. A
// connection for a named group starts with a preamble naming it (see
// appendPreamble); the system group, the StreamLayer itself, sends none, as
// nodes did before groups existed. It implements raft.StreamLayer.
type GroupStream struct {
	name   string
	layer  *StreamLayer
	accept chan net.Conn
	done   chan struct{} // closed by Close, under layer.mu
}

var _ raft.StreamLayer = (*GroupStream)(nil)

// Group registers the Raft group name on this node and returns its stream
// layer. The name is 1 to maxGroupName bytes of [a-zA-Z0-9._-]; "" is
// refused, since the system group is the StreamLayer itself. A name can be
// registered again once its GroupStream is closed, but not while it is
// open. Every node of the group registers the same name.
func (s *StreamLayer) Group(name string) (*GroupStream, error) {
	if err := validGroupName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if isClosed(s.done) {
		return nil, fmt.Errorf("cluster: raft group %q: %w", name, net.ErrClosed)
	}
	if _, ok := s.groups[name]; ok {
		return nil, fmt.Errorf("cluster: raft group %q is already running on this node", name)
	}
	g := &GroupStream{name: name, layer: s, accept: make(chan net.Conn), done: make(chan struct{})}
	s.groups[name] = g
	return g, nil
}

// Name is the group's name.
func (g *GroupStream) Name() string { return g.name }

// Accept waits for the next inbound connection of this group.
func (g *GroupStream) Accept() (net.Conn, error) {
	select {
	case c := <-g.accept:
		return c, nil
	case <-g.done:
	case <-g.layer.done:
	}
	return nil, net.ErrClosed
}

// Close stops this group only: Accept returns an error, the group's
// connections in either direction are closed, peers' new ones are refused,
// and the name is free to register again. It is safe to call more than once.
func (g *GroupStream) Close() error {
	s := g.layer
	s.mu.Lock()
	if isClosed(g.done) {
		s.mu.Unlock()
		return nil
	}
	close(g.done)
	if s.groups[g.name] == g {
		delete(s.groups, g.name)
	}
	var conns []net.Conn
	for c := range s.conns {
		if c.group == g {
			conns = append(conns, c)
		}
	}
	for c := range s.out {
		if c.group == g {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	closeAll(conns)
	return nil
}

// Addr is the node's advertised address, the same for every group.
func (g *GroupStream) Addr() net.Addr { return g.layer.addr }

// Dial opens a connection to this group on a peer's TLS port.
func (g *GroupStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return g.layer.dial(g, nil, address, timeout)
}

// The group preamble is the first thing a connection for a named group
// carries:
//
//	0xF7 'P' 'L' 'G' <length: 1 byte> <name: length bytes>
//
// hashicorp/raft's NetworkTransport starts every message on a connection
// with its RPC type byte (net_transport.go: rpcAppendEntries = 0 up to
// rpcRequestPreVote = 4), so a connection whose first byte is 0xF7 cannot
// be the system group's, and one whose first byte is anything else is (a
// node of the version before groups sends no preamble).
//
// A connection of the node's raftmux.Mux (every named group's RPCs, or one
// InstallSnapshot) starts with a preamble of its own:
//
//	0xF7 'P' 'L' 'M' <kind: 1 byte, raftmux.KindRPC or KindSnapshot>
//
// A node of a version before the Mux reads it as a group preamble with a
// tag it does not know and closes the connection.
const (
	preambleMagic = 0xF7
	preambleTag   = "PLG"
	muxTag        = "PLM"
	// maxGroupName fits the preamble's length byte with room to spare.
	maxGroupName = 200
	// preambleTimeout bounds how long an inbound connection may take to
	// send its first bytes (raft writes an RPC as soon as it dials), so a
	// silent peer cannot hold the goroutine that reads them.
	preambleTimeout = 5 * time.Second
)

// appendPreamble appends the preamble naming group to b.
func appendPreamble(b []byte, group string) []byte {
	b = append(b, preambleMagic)
	b = append(b, preambleTag...)
	b = append(b, byte(len(group)))
	return append(b, group...)
}

// appendMuxPreamble appends the preamble of a Mux connection of kind.
func appendMuxPreamble(b []byte, kind raftmux.Kind) []byte {
	b = append(b, preambleMagic)
	b = append(b, muxTag...)
	return append(b, byte(kind))
}

// readPreamble reads a whole preamble from r, and not a byte past it, and
// returns the group it names, or the kind of a Mux connection.
func readPreamble(r io.Reader) (string, raftmux.Kind, error) {
	var hdr [1 + len(preambleTag) + 1]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", 0, fmt.Errorf("group preamble: %w", err)
	}
	tag := string(hdr[1 : 1+len(preambleTag)])
	if hdr[0] == preambleMagic && tag == muxTag {
		switch kind := raftmux.Kind(hdr[len(hdr)-1]); kind {
		case raftmux.KindRPC, raftmux.KindSnapshot:
			return "", kind, nil
		default:
			return "", 0, fmt.Errorf("mux preamble: unknown kind %d", kind)
		}
	}
	if hdr[0] != preambleMagic || tag != preambleTag {
		return "", 0, fmt.Errorf("group preamble: starts % x", hdr[:1+len(preambleTag)])
	}
	n := int(hdr[len(hdr)-1])
	if n == 0 || n > maxGroupName {
		return "", 0, fmt.Errorf("group preamble: name of %d bytes, want 1 to %d", n, maxGroupName)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return "", 0, fmt.Errorf("group preamble: %w", err)
	}
	if err := validGroupName(string(name)); err != nil {
		return "", 0, err
	}
	return string(name), 0, nil
}

// validGroupName accepts 1 to maxGroupName bytes of [a-zA-Z0-9._-]: names
// go into log lines and error messages as they are.
func validGroupName(name string) error {
	if name == "" {
		return errors.New("cluster: a raft group needs a name (the system group is the StreamLayer itself)")
	}
	if len(name) > maxGroupName {
		return fmt.Errorf("cluster: raft group name of %d bytes, at most %d", len(name), maxGroupName)
	}
	for i := range len(name) {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("cluster: raft group name %q: byte %d is not one of [a-zA-Z0-9._-]", name, i)
		}
	}
	return nil
}

// unknownGroupError refuses a preamble naming a group not running here.
type unknownGroupError struct{ name string }

func (e unknownGroupError) Error() string {
	return fmt.Sprintf("raft group %q is not running on this node", e.name)
}
