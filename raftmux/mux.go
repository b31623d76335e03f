package raftmux

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Kind is what a connection carries; Config.Dial and Serve take it, and
// the node's stream layer tells the kinds apart by their preambles.
type Kind byte

const (
	// KindRPC carries requests of any group from the dialer and their
	// answers from the acceptor (see the package doc's Frames).
	KindRPC Kind = 1
	// KindSnapshot carries one InstallSnapshot and its answer.
	KindSnapshot Kind = 2
)

// Config configures a node's Mux.
type Config struct {
	// Addr is this node's Raft address, every group's LocalAddr.
	Addr raft.ServerAddress
	// Dial opens a connection of kind to the node at addr, past whatever
	// routes it to that node's Mux.Serve, within timeout.
	Dial func(addr raft.ServerAddress, kind Kind, timeout time.Duration) (net.Conn, error)
	// Timeout bounds a request's round trip, a connection's writes and a
	// dial (default 10 s, NetworkTransport's in proglog).
	Timeout time.Duration
	// FlushDelay is how long idle traffic (heartbeats, AppendEntries
	// without entries, and their answers) may wait for other frames to
	// share a write (default 5 ms; negative: none). A heartbeat's round
	// trip takes up to twice as long (raft sends one every tenth of its
	// HeartbeatTimeout, 100 ms by default, and waits a whole one).
	FlushDelay time.Duration
	// MaxQueued and MaxQueuedBytes bound the frames waiting for a
	// connection's writer (defaults 4096 and 64 MiB); a sender waits for
	// room up to Timeout. A frame bigger than MaxQueuedBytes still goes,
	// alone.
	MaxQueued      int
	MaxQueuedBytes int
	// InboundQueue bounds each group's requests waiting for its raft
	// (default 256); beyond it a request is answered with ErrBusy.
	InboundQueue int
	// MaxInFlight bounds the AppendEntries in flight on one pipeline
	// (default 2, NetworkTransport's: more in flight made raft send
	// smaller batches, each an fsync on the follower, and cost more CPU
	// per record under load; hashicorp/raft#541 found the same). At least 2.
	MaxInFlight int
	// Logger receives connection failures; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" || c.Dial == nil {
		return c, errors.New("raftmux: Config needs Addr and Dial")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.FlushDelay == 0 {
		c.FlushDelay = 5 * time.Millisecond
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 4096
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = 64 << 20
	}
	if c.InboundQueue <= 0 {
		c.InboundQueue = 256
	}
	if c.MaxInFlight < 2 {
		c.MaxInFlight = 2
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Errors a caller (raft, which logs them) gets from a Transport.
var (
	// ErrTimeout: no answer within Config.Timeout.
	ErrTimeout = errors.New("raftmux: timed out")
	// ErrBusy: the peer's queue for the group was full.
	ErrBusy = errors.New("raftmux: the peer's queue for this group is full")
	// ErrClosed: the Mux was closed.
	ErrClosed = errors.New("raftmux: closed")
)

// Mux is a node's end of the shared Raft connections: it dials its peers
// for its groups' requests, answers the requests that arrive through Serve,
// and gives each group a raft.Transport.
type Mux struct {
	cfg  Config
	done chan struct{} // closed by Close

	mu      sync.RWMutex // guards groups, peers, conns, closed
	groups  map[string]*Transport
	peers   map[raft.ServerAddress]*peer
	conns   map[net.Conn]struct{} // open connections, both ways
	closed  bool
	wg      sync.WaitGroup // the goroutines of connections and groups
	closing sync.Once
}

// New makes a node's Mux.
func New(cfg Config) (*Mux, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Mux{
		cfg:    cfg,
		done:   make(chan struct{}),
		groups: map[string]*Transport{},
		peers:  map[raft.ServerAddress]*peer{},
		conns:  map[net.Conn]struct{}{},
	}, nil
}

// Addr is the node's Raft address.
func (m *Mux) Addr() raft.ServerAddress { return m.cfg.Addr }

// Close closes every connection and group and waits for the goroutines the
// Mux started. Serve calls under way return. It is safe to call more than
// once.
func (m *Mux) Close() error {
	m.closing.Do(func() {
		m.mu.Lock()
		m.closed = true
		close(m.done)
		groups := make([]*Transport, 0, len(m.groups))
		for _, t := range m.groups {
			groups = append(groups, t)
		}
		conns := make([]net.Conn, 0, len(m.conns))
		for c := range m.conns {
			conns = append(conns, c)
		}
		m.mu.Unlock()
		for _, t := range groups {
			t.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		m.wg.Wait()
	})
	return nil
}

// track adds an open connection, or refuses it once the Mux is closed.
func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// goTracked runs f on a goroutine Close waits for; false if closed.
func (m *Mux) goTracked(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Go(f)
	return true
}

// group is the open group named name, or nil.
func (m *Mux) group(name []byte) *Transport {
	m.mu.RLock()
	t := m.groups[string(name)]
	m.mu.RUnlock()
	return t
}

// Serve handles an inbound connection of kind until it ends or the Mux
// is closed; it returns when it is done with conn, which it closes.
func (m *Mux) Serve(conn net.Conn, kind Kind) {
	if !m.track(conn) {
		conn.Close()
		return
	}
	defer m.untrack(conn)
	defer conn.Close()
	switch kind {
	case KindRPC:
		m.serveRPC(conn)
	case KindSnapshot:
		m.serveSnapshot(conn)
	default:
		m.cfg.Logger.Warn("raftmux: connection of unknown kind", "kind", kind, "remote", conn.RemoteAddr().String())
	}
}

// peer is the connection this node dialed to one peer, or the backoff
// after a failed dial.
type peer struct {
	addr raft.ServerAddress

	mu       sync.Mutex // guards conn, dialing, failures, retryAt, lastErr
	conn     *clientConn
	dialing  chan struct{} // closed when the dial under way ends
	failures int
	retryAt  time.Time
	lastErr  error
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func backoff(failures int) time.Duration {
	d := minBackoff
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// conn is the connection to addr, dialed if there is none.
func (m *Mux) conn(addr raft.ServerAddress) (*clientConn, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	p := m.peers[addr]
	if p == nil {
		p = &peer{addr: addr}
		m.peers[addr] = p
	}
	m.mu.Unlock()
	for {
		p.mu.Lock()
		if c := p.conn; c != nil {
			p.mu.Unlock()
			return c, nil
		}
		if time.Now().Before(p.retryAt) {
			err := p.lastErr
			p.mu.Unlock()
			return nil, err
		}
		if ch := p.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-m.done:
				return nil, ErrClosed
			}
		}
		ch := make(chan struct{})
		p.dialing = ch
		p.mu.Unlock()

		nc, err := m.cfg.Dial(addr, KindRPC, m.cfg.Timeout)
		var c *clientConn
		if err == nil {
			if c = m.startClient(p, nc); c == nil {
				err = ErrClosed
			}
		}
		return p.dialed(c, err)
	}
}

// connBefore is conn, dialing again after failed dials (once each
// backoff ends) until deadline; it gives up at once when cancel is closed.
func (m *Mux) connBefore(addr raft.ServerAddress, deadline time.Time, cancel <-chan struct{}) (*clientConn, error) {
	for {
		c, err := m.conn(addr)
		if err == nil || errors.Is(err, ErrClosed) {
			return c, err
		}
		m.mu.Lock()
		p := m.peers[addr]
		m.mu.Unlock()
		p.mu.Lock()
		retryAt := p.retryAt
		p.mu.Unlock()
		wait := max(time.Until(retryAt), minBackoff)
		if time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-cancel:
			timer.Stop()
			return nil, err
		case <-m.done:
			timer.Stop()
			return nil, ErrClosed
		}
	}
}

// dialed ends the dial under way (p.dialing): c becomes p's connection,
// or the dial counts as failed (err) and the peer is not dialed again for
// a backoff.
func (p *peer) dialed(c *clientConn, err error) (*clientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.dialing)
	p.dialing = nil
	if err == nil {
		// c's reader fails at once if the peer hung up at once (a node
		// being isolated or restarting), maybe before this: its
		// fail then found nothing to drop, and c, kept, would fail
		// every request to p until the Mux closed. Once c is p's
		// connection, under mu, a failure finds it.
		err = c.failed()
	}
	if err != nil {
		p.failures++
		p.retryAt = time.Now().Add(backoff(p.failures))
		p.lastErr = fmt.Errorf("raftmux: dial %s: %w", p.addr, err)
		return nil, p.lastErr
	}
	p.conn, p.lastErr = c, nil // failures is reset by the first answer
	return c, nil
}

// answered notes that a connection to p works: the backoff starts over.
func (p *peer) answered() {
	p.mu.Lock()
	p.failures = 0
	p.mu.Unlock()
}

// drop forgets c as p's connection (it failed with err); backoff makes
// the next dial wait as after a failed one. The caller holds p.mu.
func (p *peer) drop(c *clientConn, backoffNext bool, err error) {
	if p.conn == c {
		p.conn = nil
		if backoffNext {
			p.failures++
			p.retryAt = time.Now().Add(backoff(p.failures))
			p.lastErr = err
		}
	}
}
