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
)

// Handler reacts to membership changes; cluster.Log implements it. Both
// methods must be idempotent, and return an error wrapping
// raft.ErrNotLeader on a node that cannot act (it is then ignored).
type Handler interface {
	Join(id, rpcAddr string) error
	Leave(id string) error
}

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
	// again; default 10s.
	ReconcileInterval time.Duration
	// Local uses memberlist's loopback timings (faster failure detection)
	// instead of its LAN ones, for tests on one machine.
	Local  bool
	Logger *slog.Logger
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
	cfg    Config
	logger *slog.Logger
	serf   *serf.Serf
	events chan serf.Event
	stop   context.CancelFunc
	wg     sync.WaitGroup // the event and reconcile loops
	once   sync.Once
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
	m := &Membership{cfg: cfg, logger: cfg.Logger, events: make(chan serf.Event, 256)}
	stdLogger := log.New(&logWriter{logger: cfg.Logger}, "", 0)

	sc := serf.DefaultConfig()
	sc.Init()
	if cfg.Local {
		sc.MemberlistConfig = memberlist.DefaultLocalConfig()
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
	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	m.wg.Go(func() { m.eventLoop(ctx) })
	m.wg.Go(func() { m.reconcileLoop(ctx) })
	return m, nil
}

// GossipAddr is the address others pass in Join to reach this member.
func (m *Membership) GossipAddr() string {
	lm := m.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

func (m *Membership) eventLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.events:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			for _, mem := range me.Members {
				if mem.Name == m.cfg.NodeID {
					continue
				}
				switch me.Type {
				case serf.EventMemberJoin, serf.EventMemberUpdate:
					m.call("join", mem.Name, func() error { return m.cfg.Handler.Join(mem.Name, mem.Tags[TagRPCAddr]) })
				case serf.EventMemberLeave, serf.EventMemberReap:
					m.call("leave", mem.Name, func() error { return m.cfg.Handler.Leave(mem.Name) })
				}
			}
		}
	}
}

func (m *Membership) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, mem := range m.serf.Members() {
			if mem.Name == m.cfg.NodeID {
				continue
			}
			switch mem.Status {
			case serf.StatusAlive:
				m.call("join", mem.Name, func() error { return m.cfg.Handler.Join(mem.Name, mem.Tags[TagRPCAddr]) })
			case serf.StatusLeft:
				m.call("leave", mem.Name, func() error { return m.cfg.Handler.Leave(mem.Name) })
			}
		}
	}
}

func (m *Membership) call(what, id string, f func() error) {
	if err := f(); err != nil && !errors.Is(err, raft.ErrNotLeader) {
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
