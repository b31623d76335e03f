package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/tracing"
)

// Node is an assembled proglog node. New builds it; Run serves until its
// context ends and then takes it apart.
type Node struct {
	cfg    Config
	logger *slog.Logger
	ln     net.Listener
	addr   string        // what GetServers reports, and peers and clients dial
	tls    *tls.Config   // nil when Insecure
	certs  *pki.Reloader // the certificate and CA behind tls; nil when Insecure
	policy *acl.File
	store  *logstore.Log // the standalone log; nil under Raft
	member *member       // nil when Insecure
	svc    *service.Service
	srv    *service.Server
	traces *tracing.Provider // a no-op one unless Config.Tracing turned it on

	certDir string // the quickstart's, "" without it
	created bool   // the quickstart made the identity on this start

	ran atomic.Bool // Run was called
}

// New assembles a node in the order its parts depend on each other: the
// data dir, the listener (so that port 0 is resolved before the address
// is advertised), TLS (the quickstart's identity first), the ACL, the log
// (Raft, which starts here, or a standalone store) and the service. It
// starts no goroutine of its own; Raft's run from here on. Gossip joins in
// Run, once the port serves the connections the leader opens to add this
// node.
//
// When New fails it has closed what it opened (cfg.Listener too), and a
// first start leaves no Raft state behind. An error in the chain of
// ErrConfig means the Config does not fit; cluster.ErrRaftLogCorrupt, that
// the node's own Raft log is damaged (the message says what to do).
// After New succeeds, Run must be called, even with a context already
// done: it releases everything New holds.
func New(cfg Config) (_ *Node, err error) {
	if cfg, err = cfg.withDefaults(); err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, err
	}
	n := &Node{cfg: cfg, logger: cfg.Logger, ln: cfg.Listener}
	// undo holds what New opened, closed in reverse if it fails.
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	if n.ln != nil {
		undo = append(undo, func() { n.ln.Close() })
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	if n.ln == nil {
		if n.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, err
		}
		undo = append(undo, func() { n.ln.Close() })
	}
	n.addr = n.ln.Addr().String()

	restarted, err := hasRaftState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	clustered := !cfg.Insecure
	switch {
	case !clustered && restarted:
		return nil, configErrorf("%s holds Raft state, and --insecure serves a standalone log without Raft "+
			"(serving it standalone would make it diverge from its cluster): start it with TLS", filepath.Join(cfg.DataDir, "raft"))
	case clustered && cfg.Cluster.Bootstrap && len(cfg.Cluster.Join) > 0 && !restarted:
		// Once the node has state Bootstrap is ignored, so the first node
		// may be restarted with the flags it began with plus --join.
		return nil, configErrorf("--bootstrap starts a new cluster and --join joins an existing one: give one of them on a node's first start")
	}
	if clustered && cfg.Cluster.AdvertiseAddr != "" {
		n.addr = cfg.Cluster.AdvertiseAddr
	}
	if clustered && cfg.Cluster.gossip() {
		if err := dialable(n.addr); err != nil {
			return nil, err
		}
	}

	var certFile, keyFile, caFile string // the node's identity, served and presented to peers
	switch {
	case cfg.Insecure:
		n.logger.Warn("!!! --insecure: serving PLAINTEXT HTTP/2 with NO TLS and NO client authentication; " +
			"every caller is \"anonymous\", and anyone who can reach the port sees and sends data in the clear. Development only.")
	case cfg.quickstart():
		if certFile, keyFile, caFile, err = n.quickstart(); err != nil {
			return nil, err
		}
	default:
		if cfg.TLSCA == "" {
			n.logger.Warn("no --tls-ca: client certificates are not accepted, every caller is \"anonymous\"")
		}
		certFile, keyFile, caFile = cfg.TLSCert, cfg.TLSKey, cfg.TLSCA
	}
	if !cfg.Insecure {
		n.certs, err = pki.NewReloader(pki.ReloaderConfig{
			CertFile: certFile, KeyFile: keyFile, CAFile: caFile,
			// Peers verify this node's certificate against the CA file
			// they share with it.
			ChainToCA:  cfg.Cluster.gossip(),
			Logger:     n.logger,
			Registerer: cfg.Registerer,
		})
		if err != nil {
			return nil, err
		}
		n.tls = n.certs.ServerConfig()
	}

	if n.policy, err = acl.NewFile(cfg.ACL, n.logger); err != nil {
		return nil, fmt.Errorf("%w (an ACL policy file is required: deny by default; see proglog serve --help)", err)
	}

	n.traces = tracing.Off()
	if cfg.Tracing != nil {
		tc := *cfg.Tracing
		setDefault(&tc.InstanceID, cfg.NodeID)
		setDefault(&tc.ServiceVersion, cfg.Version)
		if tc.Logger == nil {
			tc.Logger = n.logger
		}
		if n.traces, err = tracing.New(context.Background(), tc); err != nil {
			if errors.Is(err, tracing.ErrConfig) {
				return nil, configErrorf("%v", err)
			}
			return nil, err
		}
		undo = append(undo, n.shutdownTracing)
	}
	// Only a provider that exports is installed: without one no span is
	// even started.
	var tp trace.TracerProvider
	if n.traces.Enabled() {
		tp = n.traces.TracerProvider()
	}

	store := cfg.Store
	store.Logger = n.logger.With("component", "logstore")
	store.Registerer = cfg.Registerer
	scfg := service.Config{
		Authorizer:          n.policy,
		NodeID:              cfg.NodeID,
		Version:             cfg.Version,
		RPCAddr:             n.addr,
		MaxRecordBytes:      store.MaxRecordBytes,
		MaxMessageBytes:     cfg.MaxMessageBytes,
		SlowConsumerTimeout: cfg.SlowConsumerTimeout,
		Dashboard:           cfg.Dashboard,
		Logger:              n.logger,
		Registerer:          cfg.Registerer,
		Gatherer:            cfg.Gatherer,
		TracerProvider:      tp,
	}
	srvCfg := service.ServerConfig{TLS: n.tls, Logger: n.logger, Limits: cfg.Limits, Registerer: cfg.Registerer}
	if clustered {
		m := &member{id: cfg.NodeID, dataDir: cfg.DataDir, advertise: n.addr, cfg: cfg.Cluster, dial: n.certs.DialConfig(),
			restarted: restarted, logger: n.logger, reg: cfg.Registerer, tp: tp}
		if err := m.open(store, cfg.StoreSyncSet); err != nil {
			return nil, err
		}
		undo = append(undo, m.close)
		n.member = m
		scfg.Topics = m.topics
		scfg.Nodes = m.servers
		scfg.RemoveNode = m.removeNode
		scfg.Forward = m.forward.Forward
		scfg.Peer = m.forward.Client
		scfg.Relay = m.forward.Relay
		srvCfg.Handoffs = map[string]func(*tls.Conn){cluster.ALPN: m.layer.Handoff}
		// Shutdown waits for handed-off connections; peers' Raft
		// connections end with serving, this node's own dials (to hand
		// leadership over) go on.
		srvCfg.OnShutdown = m.layer.CloseInbound
	} else {
		store.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"log": "records"}, cfg.Registerer) // as a cluster node labels its store
		if n.store, err = logstore.Open(filepath.Join(cfg.DataDir, "log"), store); err != nil {
			return nil, err
		}
		undo = append(undo, n.closeStore)
		scfg.Log = n.store
	}

	if n.svc, err = service.New(scfg); err != nil {
		return nil, err
	}
	srvCfg.Handler = n.svc.Handler()
	n.srv = service.NewServer(srvCfg)
	return n, nil
}

// dialable refuses an advertised address other nodes cannot dial.
func dialable(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return configErrorf("node: advertised address %q: want host:port", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) || port == "0" {
		return configErrorf("other nodes cannot dial %q: set --advertise-addr to the host:port they reach this node at", addr)
	}
	return nil
}

// Addr is the address clients and other nodes reach the node at: the
// listener's, or Cluster.AdvertiseAddr.
func (n *Node) Addr() string { return n.addr }

// Quickstart says where the quickstart keeps the development identity
// ("" when the node has TLS files of its own, or none) and whether this
// start created it.
func (n *Node) Quickstart() (certDir string, created bool) { return n.certDir, n.created }

// tracingShutdownTimeout bounds how long the last spans may take to
// export when the node stops.
const tracingShutdownTimeout = 5 * time.Second

// shutdownTracing flushes the spans not yet exported and stops the
// exporter.
func (n *Node) shutdownTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := n.traces.Shutdown(ctx); err != nil {
		n.logger.Warn("flushing traces", "err", err)
	}
}

func setDefault(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// closeStore closes the standalone log.
func (n *Node) closeStore() {
	if err := n.store.Close(); err != nil {
		n.logger.Error("closing the log", "err", err)
	}
}

// syncDescription says what makes an acknowledged record durable.
func (n *Node) syncDescription() string {
	if n.member != nil && !n.cfg.StoreSyncSet {
		return "raft log fsynced on a quorum (store: at each segment's end and every minute)"
	}
	return n.cfg.Store.Sync.String()
}

// errStopped is what the stop actor returns when Run's context ends: a
// graceful stop, not a failure.
var errStopped = errors.New("node: stopped")
