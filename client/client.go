package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/protocodec"
)

// maxClients bounds the cache of per-server clients; a cluster has a
// handful of members.
const maxClients = 64

// discoveryTimeout bounds one server's GetServers answer during a refresh.
const discoveryTimeout = 2 * time.Second

// Client talks to a proglog cluster; it is safe for concurrent use.
type Client struct {
	cfg       Config
	logger    *slog.Logger
	http      connect.HTTPClient
	transport *http.Transport // ours to close; nil when Config.HTTPClient is used
	scheme    string
	opts      []connect.ClientOption
	tracer    trace.Tracer // nil without Config.TracerProvider

	// refreshMu serializes discovery, so a burst of failures costs one
	// round of GetServers.
	refreshMu sync.Mutex

	mu        sync.Mutex // guards everything below it
	leader    string     // "" when no leader is known
	followers []string
	clients   map[string]logv1connect.LogServiceClient
	down      map[string]time.Time // address -> until when to avoid it
	gen       uint64               // bumped by every completed refresh

	rr atomic.Uint64 // round robin over followers

	topics topicCache // partition counts, for splitting keyed records

	ctx    context.Context // cancelled by Close; ends the refresher and tails
	cancel context.CancelFunc
	wg     sync.WaitGroup // the refresher
	closed atomic.Bool
}

// New makes a Client and discovers the cluster from cfg.Addrs, retrying
// with backoff until a seed answers, the retries run out or ctx ends.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		logger:  cfg.Logger,
		clients: map[string]logv1connect.LogServiceClient{},
		down:    map[string]time.Time{},
		scheme:  scheme(cfg),
		// First, so that an option after it can choose another codec.
		// Aliasing: a response's bytes and strings point into one copy of
		// it; the records handed out are clipped (clipRecord).
		opts: []connect.ClientOption{protocodec.WithAliasingCodec()},
	}
	if cfg.TracerProvider != nil {
		opt, err := tracingOption(cfg.TracerProvider)
		if err != nil {
			return nil, err
		}
		c.opts = append(c.opts, opt)
		c.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	c.opts = append(c.opts, protocolOptions(cfg.Protocol)...)
	c.http = cfg.HTTPClient
	if c.http == nil {
		c.transport = newTransport(cfg)
		c.http = &http.Client{Transport: c.transport}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	var last error
	for attempt := 0; ; attempt++ {
		if last = c.refresh(ctx, c.generation()); last == nil {
			break
		}
		if attempt >= cfg.Retries || !c.sleep(ctx, attempt) {
			c.Close()
			return nil, fmt.Errorf("client: discovering servers from %v: %w", cfg.Addrs, errors.Join(ErrRetriesExhausted, last))
		}
	}
	c.wg.Go(c.refresher)
	return c, nil
}

// scheme is the URL scheme of cfg's servers.
func scheme(cfg Config) string {
	if cfg.TLS != nil {
		return "https://"
	}
	return "http://"
}

// protocolOptions select the RPC protocol (Connect is connect-go's default).
func protocolOptions(p Protocol) []connect.ClientOption {
	switch p {
	case ProtocolGRPC:
		return []connect.ClientOption{connect.WithGRPC()}
	case ProtocolGRPCWeb:
		return []connect.ClientOption{connect.WithGRPCWeb()}
	}
	return nil
}

// maxReadFrameSize is the largest HTTP/2 frame the client accepts: see
// newTransport.
const maxReadFrameSize = 256 << 10

// newTransport makes the HTTP/2 transport: TLS with ALPN h2, or
// prior-knowledge HTTP/2 over plaintext.
func newTransport(cfg Config) *http.Transport {
	var protocols http.Protocols
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			// Pings find a dead connection to a vanished server in
			// seconds instead of the kernel's minutes.
			SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second,
			// Lets the server send a consumed batch in DATA frames of up
			// to 256 KiB instead of 16 KiB: its HTTP/2 writer then makes
			// half the write syscalls (it flushes each frame's header
			// with the first 4 KiB), and this client reads fewer frames
			// and sends fewer window updates. Larger frames gain nothing
			// more (TLS records stay 16 KiB) and hold other streams of
			// the connection back longer.
			MaxReadFrameSize: maxReadFrameSize,
		},
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
		tr.TLSClientConfig.NextProtos = []string{"h2"}
		tr.ForceAttemptHTTP2 = true
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &protocols
	return tr
}

// Close stops discovery, ends the client's tails and producers and closes
// idle connections. Calls made afterwards fail with ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	return nil
}

// refresher asks for GetServers every RefreshInterval until Close.
func (c *Client) refresher() {
	t := time.NewTicker(c.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RefreshInterval)
		if err := c.refresh(ctx, c.generation()); err != nil && c.ctx.Err() == nil {
			c.logger.Warn("refreshing the server list failed", "err", err)
		}
		cancel()
	}
}

func (c *Client) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// refresh asks the known servers, then the seeds, for GetServers and keeps
// the first answer. seen is the generation the caller's view came from: if
// another refresh completed since, its answer is fresh enough.
func (c *Client) refresh(ctx context.Context, seen uint64) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	if c.gen != seen {
		c.mu.Unlock()
		return nil
	}
	var candidates []string
	if c.leader != "" {
		candidates = append(candidates, c.leader)
	}
	candidates = append(candidates, c.followers...)
	c.mu.Unlock()
	for _, a := range c.cfg.Addrs {
		if !slices.Contains(candidates, a) {
			candidates = append(candidates, a)
		}
	}
	var errs []error
	denied := false
	for _, addr := range candidates {
		// A hung node must not hold up discovery (and every caller
		// waiting on refreshMu) for long.
		askCtx, cancel := context.WithTimeout(ctx, discoveryTimeout)
		resp, err := c.client(addr).GetServers(askCtx, &logv1.GetServersRequest{})
		cancel()
		if err == nil && len(resp.GetServers()) > 0 {
			c.apply(reachable(resp.GetServers(), addr))
			return nil
		}
		if err == nil {
			err = errors.New("empty server list")
		}
		switch connect.CodeOf(err) {
		case connect.CodePermissionDenied, connect.CodeUnauthenticated:
			denied = true
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		c.markDown(addr, err)
		if ctx.Err() != nil {
			break
		}
	}
	if denied {
		// The caller may produce without the right to list servers: use
		// the seeds, which forward appends to the leader.
		c.logger.Info("GetServers is not allowed for this identity; using the seeds as servers of unknown role")
		seeds := make([]*logv1.Server, len(c.cfg.Addrs))
		for i, a := range c.cfg.Addrs {
			seeds[i] = &logv1.Server{RpcAddr: a}
		}
		c.apply(seeds)
		return nil
	}
	return errors.Join(errs...)
}

// apply installs a server list.
func (c *Client) apply(servers []*logv1.Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.leader
	c.leader, c.followers = "", nil
	for _, s := range servers {
		switch {
		case s.GetRpcAddr() == "":
		case s.GetIsLeader() && c.leader == "":
			c.leader = s.GetRpcAddr()
		default:
			c.followers = append(c.followers, s.GetRpcAddr())
		}
	}
	c.gen++
	if c.leader != prev {
		c.logger.Info("leader changed", "from", prev, "to", c.leader, "followers", c.followers)
	}
}

// reachable returns servers as the client should dial them, having asked
// the server at asked: an address with an unspecified host (0.0.0.0 or ::,
// what a standalone node serving --insecure on every interface reports) is
// reached at asked's host, since only the node answering can report it (a
// cluster member must advertise a host others can dial).
func reachable(servers []*logv1.Server, asked string) []*logv1.Server {
	askedHost, _, err := net.SplitHostPort(asked)
	if err != nil {
		return servers
	}
	out, cloned := servers, false
	for i, s := range servers {
		host, port, err := net.SplitHostPort(s.GetRpcAddr())
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(servers), true // the caller's answer stays as the server sent it
		}
		out[i] = &logv1.Server{Id: s.GetId(), RpcAddr: net.JoinHostPort(askedHost, port), IsLeader: s.GetIsLeader(), PartitionLeaders: s.GetPartitionLeaders()}
	}
	return out
}

// client returns the cached Connect client for addr.
func (c *Client) client(addr string) logv1connect.LogServiceClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.clients[addr]
	if !ok {
		if len(c.clients) >= maxClients {
			clear(c.clients) // servers that moved for good leave entries behind
		}
		cl = logv1connect.NewLogServiceClient(c.http, c.scheme+addr, c.opts...)
		c.clients[addr] = cl
	}
	return cl
}

// markDown keeps reads away from addr for a while after its connection
// failed (a dead node stays in the Raft configuration until removed).
func (c *Client) markDown(addr string, err error) {
	if !notSent(err) && connect.CodeOf(err) != connect.CodeUnavailable {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down[addr] = c.cfg.Now().Add(c.cfg.Backoff.Max)
}

func (c *Client) isDown(addr string, now time.Time) bool {
	until, ok := c.down[addr]
	if ok && !now.Before(until) {
		delete(c.down, addr)
		return false
	}
	return ok
}

// writeTarget returns where appends go: the leader, or while none is known
// any server (followers forward to the leader once one is elected).
func (c *Client) writeTarget() (addr string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader, c.gen
	}
	all := c.followers
	if len(all) == 0 {
		all = c.cfg.Addrs
	}
	return all[int(c.rr.Add(1)%uint64(len(all)))], c.gen
}

// readTarget returns where the attempt-th try of a read goes: the
// followers in turn (skipping ones that recently failed), else the leader.
// avoid is a server the previous attempt failed on.
func (c *Client) readTarget(avoid string) (addr string, isLeader bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	var up []string
	for _, f := range c.followers {
		if f != avoid && !c.isDown(f, now) {
			up = append(up, f)
		}
	}
	if len(up) > 0 {
		return up[int(c.rr.Add(1)%uint64(len(up)))], false, c.gen
	}
	if c.leader != "" && (c.leader != avoid || len(c.followers) == 0) {
		return c.leader, true, c.gen
	}
	// Everyone looks down: try them all in turn rather than give up.
	all := slices.Clone(c.followers)
	if c.leader != "" {
		all = append(all, c.leader)
	}
	if len(all) == 0 {
		all = c.cfg.Addrs
	}
	addr = all[int(c.rr.Add(1)%uint64(len(all)))]
	return addr, addr == c.leader, c.gen
}

// leaderTarget returns where a read that wants the freshest answer goes:
// the leader, or when none is known or it is avoid, a read target.
func (c *Client) leaderTarget(avoid string) (addr string, gen uint64) {
	c.mu.Lock()
	leader, gen := c.leader, c.gen
	c.mu.Unlock()
	if leader != "" && leader != avoid {
		return leader, gen
	}
	addr, _, gen = c.readTarget(avoid)
	return addr, gen
}

// leaderAddr returns the leader's address, "" when unknown.
func (c *Client) leaderAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// sleep waits the attempt-th backoff; false if ctx or the client ended first.
func (c *Client) sleep(ctx context.Context, attempt int) bool {
	return c.wait(ctx, c.backoff(attempt))
}

// backoff draws the attempt-th wait: between half and all of
// min(Max, Initial·2^attempt).
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.Backoff.Initial << min(attempt, 30)
	if d <= 0 || d > c.cfg.Backoff.Max {
		d = c.cfg.Backoff.Max
	}
	return d/2 + rand.N(d/2+1)
}

// wait waits d; false if ctx or the client ended first.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-c.ctx.Done():
		return false
	}
}

// afterFailure refreshes the server list when err suggests it changed.
func (c *Client) afterFailure(ctx context.Context, addr string, gen uint64, err error) {
	c.markDown(addr, err)
	if shouldRefresh(err) {
		if rerr := c.refresh(ctx, gen); rerr != nil && ctx.Err() == nil {
			c.logger.Debug("refresh after a failure failed", "err", rerr)
		}
	}
}

// Servers returns the cluster's members as a server answers GetServers now
// (and updates the client's view with it).
func (c *Client) Servers(ctx context.Context) ([]*logv1.Server, error) {
	var addr string // the server the current attempt asks
	return read(ctx, c, "GetServers", func(avoid string) (string, uint64) {
		a, _, gen := c.readTarget(avoid)
		addr = a
		return a, gen
	}, func(ctx context.Context, lc logv1connect.LogServiceClient) ([]*logv1.Server, error) {
		resp, err := lc.GetServers(ctx, &logv1.GetServersRequest{})
		if err != nil {
			return nil, err
		}
		c.apply(reachable(resp.GetServers(), addr))
		return resp.GetServers(), nil
	})
}

// giveUp wraps the last error of a call whose retries ran out (or whose
// ctx or client ended while it waited).
func (c *Client) giveUp(ctx context.Context, last error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w (last failure: %w)", ctx.Err(), last)
	case c.closed.Load():
		return fmt.Errorf("%w (last failure: %w)", ErrClosed, last)
	}
	return fmt.Errorf("%w: %w", ErrRetriesExhausted, last)
}
