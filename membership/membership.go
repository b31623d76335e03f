package membership

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
	"github.com/prometheus/client_golang/prometheus"
)

// Handler reacts to membership changes; cluster.Log implements it. Its
// methods must be idempotent, and return an error wrapping
// raft.ErrNotLeader on a node that cannot act (it is then ignored).
type Handler interface {
	// Join adds id at rpcAddr as a voter (or moves it there).
	Join(id, rpcAddr string) error
	// Leave removes id from the voters.
	Leave(id string) error
	// Voters lists the voters, node ID to RPC address. Membership asks it
	// before anything else, so a follower answers raft.ErrNotLeader here
	// and is spared the checks that only the leader needs.
	Voters() (map[string]string, error)
	// RemoveFailed removes id, a member failed for ReapFailedAfter, from
	// the voters, but only once the leader has confirmed that a quorum of
	// the current configuration still answers it (hashicorp/raft's
	// VerifyLeader): with id down, those are a majority of the
	// configuration without it. Gossip alone cannot tell: a member that
	// is dying too may still look alive.
	RemoveFailed(id string) error
}

// VerifyFunc proves that the member id may become a voter at rpcAddr, the
// address it gossips; a non-nil error keeps it out (see TLSVerifier).
type VerifyFunc func(ctx context.Context, id, rpcAddr string) error

// TagRPCAddr is the tag carrying a member's RPC (and Raft) address.
const TagRPCAddr = "rpc_addr"

// Config configures a member.
type Config struct {
	NodeID     string   // unique and stable across restarts
	GossipAddr string   // host:port to bind for gossip (UDP and TCP); port 0 picks one
	RPCAddr    string   // the node's TLS port, gossiped as TagRPCAddr
	Join       []string // gossip addresses of existing members; empty starts alone
	// SnapshotPath, when set, is a file where Serf keeps the members it
	// knows; a restarted node rejoins them from it even without Join.
	SnapshotPath string
	SecretKey    []byte // gossip encryption key (16, 24 or 32 bytes); see ParseKey
	Handler      Handler
	// ReconcileInterval is how often all members are passed to the Handler
	// again; default 10s, or a quarter of ReapFailedAfter if that is
	// shorter.
	ReconcileInterval time.Duration
	// Verify is asked, on the leader, before a member that is not yet a
	// voter at its gossiped address is passed to Handler.Join; a member it
	// refuses stays out and is asked again on every reconcile. Nil admits
	// every member that holds the gossip key: only for tests of the Raft
	// wiring. proglog serve sets TLSVerifier.
	Verify VerifyFunc
	// VerifyTimeout bounds one Verify call; default 5s.
	VerifyTimeout time.Duration
	// ReapFailedAfter is how long a member may stay failed (crashed, cut
	// off) before the leader removes it from the voters and from gossip,
	// provided the remaining voters that are alive are a majority of the
	// configuration without it. Zero keeps failed members for ever.
	ReapFailedAfter time.Duration
	// Local uses memberlist's loopback timings (faster failure detection)
	// instead of its LAN ones, for tests on one machine.
	Local      bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer // optional
}

// ParseKey decodes a base64 gossip key of 16, 24 or 32 bytes (32 picks AES-256).
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip key is not base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("membership: gossip key has %d bytes, want 16, 24 or 32", len(key))
}

// Member is one node as gossip sees it.
type Member struct {
	ID      string
	RPCAddr string
	Status  string // "alive", "leaving", "left", "failed"
}

// Membership is this node's gossip agent.
type Membership struct {
	cfg     Config
	logger  *slog.Logger
	serf    *serf.Serf
	events  chan serf.Event
	removes chan removal  // Remove's requests, served by the run loop
	closed  chan struct{} // closed when the run loop ends
	metrics metrics
	stop    context.CancelFunc
	wg      sync.WaitGroup // the run loop
	once    sync.Once

	// Owned by the run loop (no lock): when each member was first seen
	// failed, the last refusal logged for each member ("addr: reason"),
	// and the members whose reaping was last found unsafe.
	failedSince map[string]time.Time
	refused     map[string]string
	reapHeld    map[string]bool
}

type metrics struct {
	refused prometheus.Counter
	reaped  prometheus.Counter
}

// New starts gossip and joins cfg.Join (if any). It fails if none of them
// can be joined.
func New(cfg Config) (*Membership, error) {
	if cfg.NodeID == "" || cfg.RPCAddr == "" || cfg.Handler == nil {
		return nil, errors.New("membership: NodeID, RPCAddr and Handler are required")
	}
	if len(cfg.SecretKey) != 0 {
		if err := memberlist.ValidateKey(cfg.SecretKey); err != nil {
			return nil, fmt.Errorf("membership: %w", err)
		}
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	if cfg.VerifyTimeout == 0 {
		cfg.VerifyTimeout = 5 * time.Second
	}
	if cfg.ReapFailedAfter < 0 {
		return nil, errors.New("membership: ReapFailedAfter must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip address %q: %w", cfg.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip port %q: %w", portStr, err)
	}
	m := &Membership{
		cfg: cfg, logger: cfg.Logger, events: make(chan serf.Event, 256), removes: make(chan removal), closed: make(chan struct{}),
		failedSince: map[string]time.Time{}, refused: map[string]string{}, reapHeld: map[string]bool{},
		metrics: metrics{
			refused: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "proglog_membership_joins_refused_total",
				Help: "Times the leader refused to make a gossip member a voter because Verify failed (checked again every reconcile).",
			}),
			reaped: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "proglog_membership_failed_members_removed_total",
				Help: "Members the leader removed (from Raft if voters, and from gossip) after they stayed failed longer than ReapFailedAfter.",
			}),
		},
	}
	stdLogger := log.New(&logWriter{logger: cfg.Logger}, "", 0)

	sc := serf.DefaultConfig()
	sc.Init()
	if cfg.Local {
		sc.MemberlistConfig = memberlist.DefaultLocalConfig()
		// A member nobody else confirms as failed is declared failed
		// after the minimum suspicion time (3s here), not six times it.
		sc.MemberlistConfig.SuspicionMaxTimeoutMult = 1
		sc.LeavePropagateDelay = 100 * time.Millisecond
		sc.BroadcastTimeout = time.Second
		sc.ReapInterval = time.Second
	}
	sc.NodeName = cfg.NodeID
	sc.SnapshotPath = cfg.SnapshotPath
	sc.Tags = map[string]string{TagRPCAddr: cfg.RPCAddr}
	sc.EventCh = m.events
	sc.LogOutput = nil
	sc.Logger = stdLogger
	sc.MemberlistConfig.Name = cfg.NodeID
	sc.MemberlistConfig.BindAddr = host
	sc.MemberlistConfig.BindPort = port
	sc.MemberlistConfig.AdvertisePort = port
	sc.MemberlistConfig.SecretKey = cfg.SecretKey
	sc.MemberlistConfig.Logger = stdLogger
	sc.MemberlistConfig.LogOutput = nil
	if m.serf, err = serf.Create(sc); err != nil {
		return nil, fmt.Errorf("membership: start serf: %w", err)
	}
	if len(cfg.Join) > 0 {
		if _, err := m.serf.Join(cfg.Join, true); err != nil {
			m.serf.Shutdown()
			return nil, fmt.Errorf("membership: join %v: %w", cfg.Join, err)
		}
	}
	if cfg.Registerer != nil {
		// Registered only once joined: a caller may retry New after a
		// failed join.
		for _, c := range []prometheus.Collector{m.metrics.refused, m.metrics.reaped} {
			if err := cfg.Registerer.Register(c); err != nil {
				m.serf.Shutdown()
				return nil, fmt.Errorf("membership: register metrics: %w", err)
			}
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	m.wg.Go(func() { m.run(ctx) })
	return m, nil
}

// GossipAddr is the address others pass in Join to reach this member.
func (m *Membership) GossipAddr() string {
	lm := m.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

// reconcileEvery is ReconcileInterval, or a quarter of ReapFailedAfter
// when that is shorter (but at least 100ms), so a failed member is removed
// soon after it is due.
func (m *Membership) reconcileEvery() time.Duration {
	d := m.cfg.ReconcileInterval
	if r := m.cfg.ReapFailedAfter / 4; r > 0 && r < d {
		d = max(r, 100*time.Millisecond)
	}
	return d
}

// run passes Serf's events and, every ReconcileInterval, the whole member
// list to the Handler, from this one goroutine.
func (m *Membership) run(ctx context.Context) {
	defer close(m.closed)
	t := time.NewTicker(m.reconcileEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.events:
			if me, ok := e.(serf.MemberEvent); ok {
				m.handleEvent(ctx, me)
			}
		case <-t.C:
			m.reconcile(ctx)
		case r := <-m.removes:
			r.done <- m.remove(r.id)
		}
	}
}

func (m *Membership) handleEvent(ctx context.Context, me serf.MemberEvent) {
	for _, mem := range me.Members {
		if mem.Name == m.cfg.NodeID {
			continue
		}
		switch me.Type {
		case serf.EventMemberJoin, serf.EventMemberUpdate:
			delete(m.failedSince, mem.Name)
			delete(m.reapHeld, mem.Name)
			m.admit(ctx, mem.Name, mem.Tags[TagRPCAddr], nil)
		case serf.EventMemberFailed:
			if _, ok := m.failedSince[mem.Name]; !ok {
				m.failedSince[mem.Name] = time.Now()
			}
		case serf.EventMemberLeave, serf.EventMemberReap:
			m.forget(mem.Name)
			m.depart(mem.Name, nil)
		}
	}
}

// reconcile covers the events the leader missed (it was a follower then,
// or had no leader yet), admits members Verify refused before, and reaps
// members failed for too long.
func (m *Membership) reconcile(ctx context.Context) {
	members := m.serf.Members()
	now := time.Now()
	alive := map[string]bool{m.cfg.NodeID: true}
	for _, mem := range members {
		if mem.Status == serf.StatusAlive {
			alive[mem.Name] = true
		}
		if mem.Status != serf.StatusFailed {
			delete(m.failedSince, mem.Name)
			delete(m.reapHeld, mem.Name)
		} else if _, ok := m.failedSince[mem.Name]; !ok {
			m.failedSince[mem.Name] = now
		}
	}
	voters, err := m.cfg.Handler.Voters()
	if err != nil {
		m.handlerErr("voters", "", err)
		return
	}
	for _, mem := range members {
		if mem.Name == m.cfg.NodeID {
			continue
		}
		switch mem.Status {
		case serf.StatusAlive:
			m.admit(ctx, mem.Name, mem.Tags[TagRPCAddr], voters)
		case serf.StatusLeft:
			m.depart(mem.Name, voters)
		case serf.StatusFailed:
			if m.cfg.ReapFailedAfter > 0 && now.Sub(m.failedSince[mem.Name]) >= m.cfg.ReapFailedAfter {
				m.reap(mem.Name, voters, alive)
			}
		}
	}
}

// admit makes id a voter at addr once Verify accepts it. voters is the
// Handler's list, or nil to ask for it.
func (m *Membership) admit(ctx context.Context, id, addr string, voters map[string]string) {
	if voters == nil {
		var err error
		if voters, err = m.cfg.Handler.Voters(); err != nil {
			m.handlerErr("voters", id, err)
			return
		}
	}
	if a, ok := voters[id]; ok && a == addr {
		delete(m.refused, id)
		return
	}
	if err := m.verify(ctx, id, addr); err != nil {
		if ctx.Err() != nil {
			return // closing
		}
		m.metrics.refused.Inc()
		if last := addr + ": " + err.Error(); m.refused[id] != last {
			m.refused[id] = last
			m.logger.Warn("membership: refused to add a member as a voter; it stays out, and is checked again every reconcile",
				"member", id, "rpc_addr", addr, "reason", err.Error())
		}
		return
	}
	if _, ok := m.refused[id]; ok {
		m.logger.Info("membership: member verified after earlier refusals", "member", id, "rpc_addr", addr)
		delete(m.refused, id)
	}
	m.call("join", id, func() error { return m.cfg.Handler.Join(id, addr) })
}

func (m *Membership) verify(ctx context.Context, id, addr string) error {
	if addr == "" {
		return fmt.Errorf("member gossips no %s tag", TagRPCAddr)
	}
	if m.cfg.Verify == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.VerifyTimeout)
	defer cancel()
	return m.cfg.Verify(ctx, id, addr)
}

// depart removes id from the voters if it is one. voters is the Handler's
// list, or nil to ask for it.
func (m *Membership) depart(id string, voters map[string]string) {
	if voters == nil {
		var err error
		if voters, err = m.cfg.Handler.Voters(); err != nil {
			m.handlerErr("voters", id, err)
			return
		}
	}
	if _, ok := voters[id]; !ok {
		return
	}
	m.call("leave", id, func() error { return m.cfg.Handler.Leave(id) })
}

// forget drops what the run loop remembers of a member that left or was reaped.
func (m *Membership) forget(id string) {
	delete(m.failedSince, id)
	delete(m.refused, id)
	delete(m.reapHeld, id)
}

// reap removes a member failed for longer than ReapFailedAfter from the
// voters, unless the voters that would remain have no live majority as
// gossip sees them (removing it would then leave a configuration that
// cannot commit, where keeping it lets the cluster recover when it comes
// back), nor as Raft sees them (Handler.RemoveFailed); and then from
// gossip, so Serf stops reconnecting to it and no member brings it back as
// failed. A reaped node that comes back joins again like a new one: it
// gossips a newer join and is verified and added again.
func (m *Membership) reap(id string, voters map[string]string, alive map[string]bool) {
	if _, ok := voters[id]; ok {
		remaining, live, ok := liveMajorityWithout(id, voters, alive)
		if !ok {
			if !m.reapHeld[id] {
				m.reapHeld[id] = true
				m.logger.Warn("membership: not removing a failed member: the voters left would have no live majority",
					"member", id, "failed_for", time.Since(m.failedSince[id]).Round(time.Millisecond).String(),
					"voters_left", remaining, "alive", live)
			}
			return
		}
		if err := m.cfg.Handler.RemoveFailed(id); err != nil {
			m.handlerErr("remove failed", id, err)
			return
		}
	}
	m.metrics.reaped.Inc()
	m.logger.Warn("membership: removed a failed member from the cluster", "member", id,
		"failed_for", time.Since(m.failedSince[id]).Round(time.Millisecond).String(), "after", m.cfg.ReapFailedAfter.String())
	m.forget(id)
	// Its state here is "left" at once; the broadcast may time out when few
	// members are alive, and gossip's state exchange then spreads it.
	if err := m.serf.RemoveFailedNode(id); err != nil {
		m.logger.Warn("membership: announcing the removal of a failed member", "member", id, "err", err)
	}
}

// Errors of Remove.
var (
	// ErrAlive: gossip sees the member alive; stop it first.
	ErrAlive = errors.New("membership: the member is alive")
	// ErrUnknownMember: neither gossip nor Raft's voters know the member.
	ErrUnknownMember = errors.New("membership: no such member")
	// ErrSelf: a member cannot remove itself (stop it, then ask another).
	ErrSelf = errors.New("membership: a member cannot remove itself")
	// ErrNoLiveMajority: the voters that would remain have no live
	// majority, so the removal could not commit, or would leave a
	// configuration that cannot.
	ErrNoLiveMajority = errors.New("membership: the remaining voters would have no live majority")
	// ErrClosed: gossip has stopped.
	ErrClosed = errors.New("membership: closed")
)

type removal struct {
	id   string
	done chan error
}

// Remove removes id, a member that is down (failed or left in gossip, or
// a voter gossip no longer knows), from the voters and from gossip at
// once, as reaping does after ReapFailedAfter. Only the leader can: on
// another member it returns the Handler's error (wrapping
// raft.ErrNotLeader). The member may come back later and join as a new
// one. Removing a member that has already left succeeds.
func (m *Membership) Remove(ctx context.Context, id string) error {
	r := removal{id: id, done: make(chan error, 1)}
	select {
	case m.removes <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.closed:
		return ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the run loop finishes it and drops the answer
	}
}

// remove serves Remove on the run loop.
func (m *Membership) remove(id string) error {
	if id == m.cfg.NodeID {
		return fmt.Errorf("%w: %q is this node", ErrSelf, id)
	}
	voters, err := m.cfg.Handler.Voters()
	if err != nil {
		return err
	}
	alive := map[string]bool{m.cfg.NodeID: true}
	var status serf.MemberStatus = serf.StatusNone
	for _, mem := range m.serf.Members() {
		if mem.Status == serf.StatusAlive {
			alive[mem.Name] = true
		}
		if mem.Name == id {
			status = mem.Status
		}
	}
	_, voter := voters[id]
	switch {
	case status == serf.StatusAlive || status == serf.StatusLeaving:
		return fmt.Errorf("%w: %q is %s in gossip; stop it first (a node stops without leaving unless it runs with --leave-on-terminate)", ErrAlive, id, status)
	case !voter && status == serf.StatusNone:
		return fmt.Errorf("%w: %q is neither a voter nor a member gossip knows", ErrUnknownMember, id)
	case !voter && status == serf.StatusLeft:
		return nil // already out: a retried Remove succeeds
	}
	if voter {
		if remaining, live, ok := liveMajorityWithout(id, voters, alive); !ok {
			return fmt.Errorf("%w: removing %q leaves %d voters of which %d are alive", ErrNoLiveMajority, id, remaining, live)
		}
		if err := m.cfg.Handler.RemoveFailed(id); err != nil {
			return err
		}
	}
	m.logger.Warn("membership: removed a member on request", "member", id, "gossip_status", status.String(), "voter", voter)
	m.forget(id)
	if status == serf.StatusFailed {
		if err := m.serf.RemoveFailedNode(id); err != nil {
			m.logger.Warn("membership: announcing the removal of a failed member", "member", id, "err", err)
		}
	}
	return nil
}

// liveMajorityWithout counts the voters that remain without id and those
// of them gossip sees alive; ok when the live ones are a majority of the
// remaining, so that removing id leaves a configuration that can commit.
func liveMajorityWithout(id string, voters map[string]string, alive map[string]bool) (remaining, live int, ok bool) {
	for v := range voters {
		if v == id {
			continue
		}
		remaining++
		if alive[v] {
			live++
		}
	}
	return remaining, live, 2*live > remaining
}

func (m *Membership) call(what, id string, f func() error) {
	m.handlerErr(what, id, f())
}

func (m *Membership) handlerErr(what, id string, err error) {
	if err != nil && !errors.Is(err, raft.ErrNotLeader) {
		m.logger.Error("membership: handler failed", "event", what, "member", id, "err", err)
	}
}

// Members lists the members gossip knows, this node included.
func (m *Membership) Members() []Member {
	var out []Member
	for _, mem := range m.serf.Members() {
		out = append(out, Member{ID: mem.Name, RPCAddr: mem.Tags[TagRPCAddr], Status: mem.Status.String()})
	}
	return out
}

// Leave announces a graceful departure (the leader then removes this node
// from Raft) and stops gossip.
func (m *Membership) Leave() error {
	err := m.serf.Leave()
	return errors.Join(err, m.Close())
}

// Close stops gossip without announcing a departure (others see a failure
// and keep the node as a voter).
func (m *Membership) Close() error {
	var err error
	m.once.Do(func() {
		err = m.serf.Shutdown()
		m.stop()
		m.wg.Wait()
	})
	return err
}

// logWriter turns memberlist's and serf's "[LEVEL] text" lines into slog records.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[TRACE]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
		if bytes.HasPrefix(line, []byte(prefix)) {
			level = l
			line = bytes.TrimSpace(line[len(prefix):])
			break
		}
	}
	w.logger.Log(context.Background(), level, string(line), "component", "gossip")
	return len(p), nil
}
