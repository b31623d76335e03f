package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/internal/memlimit"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/tracing"
	"github.com/proglog/proglog/web"
)

type serveFlags struct {
	addr, dataDir, aclPath, nodeID string
	insecure                       bool
	tlsCert, tlsKey, tlsCA         string
	logLevel, logFormat            string
	maxRecordBytes, segmentBytes   byteSize
	maxMessageBytes                byteSize
	memoryLimit                    byteSize
	slowConsumer                   time.Duration
	sync                           string
	syncInterval                   time.Duration
	retentionBytes                 byteSize
	retentionAge                   time.Duration
	pageCacheTail                  byteSize
	aclPoll, tlsPoll               time.Duration
	shutdownTimeout                time.Duration
	syncSet                        bool // --sync was given (flag, env or file)
	cluster                        clusterFlags
	limits                         limitFlags
}

// limitFlags are service.Limits as flags.
type limitFlags struct {
	maxConns, maxAnonConns, maxStreams, maxAnonStreams int
	maxHeaderBytes                                     byteSize
	handshakeTimeout, bodyTimeout, idleTimeout         time.Duration
}

func (l *limitFlags) register(f *pflag.FlagSet) {
	d := service.DefaultLimits()
	f.IntVar(&l.maxConns, "max-conns", d.MaxConns, "most connections open at once (all callers, Raft's included); more are closed at once")
	f.IntVar(&l.maxAnonConns, "max-anonymous-conns", d.MaxAnonymousConns, "most connections without a verified client certificate (Raft's are never counted)")
	f.IntVar(&l.maxStreams, "max-streams", d.MaxStreams, "most concurrent HTTP/2 requests per authenticated connection")
	f.IntVar(&l.maxAnonStreams, "max-anonymous-streams", d.MaxAnonymousStreams, "most concurrent HTTP/2 requests per anonymous connection")
	l.maxHeaderBytes = byteSize(d.MaxHeaderBytes)
	f.Var(&l.maxHeaderBytes, "max-header-bytes", "largest request headers accepted (anonymous HTTP/2 callers: at most 16KiB)")
	f.DurationVar(&l.handshakeTimeout, "handshake-timeout", d.HandshakeTimeout, "time a new connection has for its TLS handshake (and an HTTP/1.1 request for its headers)")
	f.DurationVar(&l.bodyTimeout, "body-timeout", d.BodyTimeout, "time a request has to send its body (a stream: its first message) after its headers; for authenticated callers, between pieces of it")
	f.DurationVar(&l.idleTimeout, "idle-timeout", d.IdleTimeout, "close connections with no request in flight for this long")
}

func (l *limitFlags) limits() (service.Limits, error) {
	lim := service.Limits{
		MaxConns: l.maxConns, MaxAnonymousConns: l.maxAnonConns,
		MaxStreams: l.maxStreams, MaxAnonymousStreams: l.maxAnonStreams,
		MaxHeaderBytes:   int(min(l.maxHeaderBytes, 1<<30)),
		HandshakeTimeout: l.handshakeTimeout, BodyTimeout: l.bodyTimeout, IdleTimeout: l.idleTimeout,
	}
	for name, v := range map[string]int{"max-conns": l.maxConns, "max-anonymous-conns": l.maxAnonConns,
		"max-streams": l.maxStreams, "max-anonymous-streams": l.maxAnonStreams} {
		if v < 1 {
			return lim, usagef("--%s must be at least 1", name)
		}
	}
	for name, v := range map[string]time.Duration{"handshake-timeout": l.handshakeTimeout, "body-timeout": l.bodyTimeout, "idle-timeout": l.idleTimeout} {
		if v <= 0 {
			return lim, usagef("--%s must be positive", name)
		}
	}
	if l.maxAnonConns > l.maxConns {
		return lim, usagef("--max-anonymous-conns (%d) must not exceed --max-conns (%d)", l.maxAnonConns, l.maxConns)
	}
	if l.maxHeaderBytes < 4<<10 {
		return lim, usagef("--max-header-bytes must be at least 4KiB")
	}
	return lim, nil
}

func newServeCmd(e *env) *cobra.Command {
	host, _ := os.Hostname()
	if host == "" {
		host = "proglog"
	}
	sf := serveFlags{maxRecordBytes: 1 << 20, maxMessageBytes: 8 << 20, segmentBytes: 64 << 20, memoryLimit: memlimit.Default}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a proglog node",
		Long: `Run a proglog node: one port for gRPC, gRPC-Web and Connect over mutual TLS,
with gRPC reflection and health, Prometheus metrics at /metrics and the
dashboard at /.

Every node is a member of a replicated cluster (Raft over the same TLS
port). A node started without --join starts a cluster of its own, one
member until others join it, and stays its member on every restart. With
--gossip-key it gossips (Serf on --gossip-addr) so that other nodes can join
it; nodes join with --join (gossip addresses of members) and the same key.
Every node needs certificates from one CA and a unique --node-id; see the
README's "Running a cluster". With --insecure the node serves a standalone
log without Raft (a cluster needs TLS).

With no TLS flags and no --insecure, the node runs the quickstart: on first
start it creates a development CA, a server certificate for localhost and a
"root" client certificate in <data-dir>/certs, and an ACL <data-dir>/acl.csv
that lets root do everything; later starts reuse them.

ACL (--acl, reloaded when the file changes): lines "p, <subject>, <object>,
<action>": subject a certificate common name, "anonymous" or "*" (any
authenticated caller); object "log" or "*"; action produce, consume, admin
(reflection and /metrics) or "*". Health checks and the dashboard's files are
always open. Deny by default.

Tracing (OpenTelemetry, off unless configured): set
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and
optionally OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc),
OTEL_TRACES_SAMPLER and _ARG, OTEL_SERVICE_NAME; OTEL_SDK_DISABLED=true turns
it off. See the README's "Tracing".

Memory: serve starts itself again at once (same PID) with
GODEBUG=madvdontneed=0 added, so that memory the Go runtime hands back
under --memory-limit is returned lazily (MADV_FREE) and reused without page
faults; GODEBUG=madvdontneed=1 in the environment keeps Go's default.

Config file (--config): "name = value" lines with flag names, e.g.
  addr = 0.0.0.0:8400
  sync = interval
  retention-bytes = 10GiB` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sf.syncSet = cmd.Flags().Changed("sync")
			sf.cluster.diskReserveSet = cmd.Flags().Changed("disk-reserve")
			return serve(cmd.Context(), e, sf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.addr, "addr", defaultAddr, "address to listen on")
	f.StringVar(&sf.dataDir, "data-dir", "./data", "directory for the log, and the quickstart's certificates and ACL")
	f.BoolVar(&sf.insecure, "insecure", false, "serve plaintext HTTP/2 without TLS: every caller is anonymous (development only)")
	f.StringVar(&sf.tlsCert, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&sf.tlsKey, "tls-key", "", "server key (PEM)")
	f.StringVar(&sf.tlsCA, "tls-ca", "", "CA that client certificates must chain to (PEM)")
	f.StringVar(&sf.aclPath, "acl", "", "ACL policy file (default <data-dir>/acl.csv)")
	f.DurationVar(&sf.aclPoll, "acl-poll", 2*time.Second, "how often to check the ACL file for changes")
	f.DurationVar(&sf.tlsPoll, "tls-poll", 5*time.Second, "how often to check --tls-cert, --tls-key and --tls-ca for changes (new connections take them)")
	f.DurationVar(&sf.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight produces may take to finish on SIGINT/SIGTERM")
	f.StringVar(&sf.nodeID, "node-id", host, "this node's name")
	f.StringVar(&sf.logLevel, "log-level", "info", levelFlagHelp)
	f.StringVar(&sf.logFormat, "log-format", "auto", "log format: auto (text on a terminal, else json), text or json")
	f.Var(&sf.maxRecordBytes, "max-record-bytes", "largest record value accepted")
	f.Var(&sf.maxMessageBytes, "max-message-bytes", "largest request message (a batch) accepted")
	f.DurationVar(&sf.slowConsumer, "slow-consumer-timeout", 30*time.Second, "end a stream whose client accepts nothing for this long")
	f.Var(&sf.segmentBytes, "segment-bytes", "segment size at which a new segment starts")
	f.StringVar(&sf.sync, "sync", "always", "fsync policy: always (ack after fdatasync), interval or never")
	f.DurationVar(&sf.syncInterval, "sync-interval", 100*time.Millisecond, "fsync period with --sync interval")
	f.Var(&sf.retentionBytes, "retention-bytes", "delete the oldest segments beyond this size (0 = keep all)")
	f.DurationVar(&sf.retentionAge, "retention-age", 0, "delete segments whose newest record is older (0 = keep all)")
	f.Var(&sf.pageCacheTail, "page-cache-tail", "bound the page cache each record log (each partition's too) keeps to this much of its end: older pages leave it once on disk, and a consumer reading further back reads from the disk and drops what it read, so writes reuse the freed pages and a catch-up read does not push the end out (0 = keep every page until memory runs short, as Kafka does)")
	f.Var(&sf.memoryLimit, "memory-limit", "soft limit of the Go runtime's memory while the live heap is small: the garbage collector runs more often rather than let the heap grow past it, and above it the limit rises with the live heap (at least half GOGC's headroom), so it never fails an allocation or stalls the node (0 = none: GOGC alone; GOMEMLIMIT in the environment overrides it)")
	sf.cluster.register(f)
	sf.limits.register(f)
	return cmd
}

// serve runs a node: the flags become a node.Config, and the node package
// assembles, runs and stops it.
func serve(ctx context.Context, e *env, sf serveFlags) error {
	logger, err := newLogger(e.stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return err
	}
	// Before anything is opened; not once a signal came (the new start
	// would not see it).
	if e.reexec != nil && ctx.Err() == nil {
		if err := e.reexec(); err != nil {
			logger.Warn("serve: could not start again with the Go runtime returning memory lazily; going on as started", "err", err)
		}
	}
	cfg, err := sf.config(logger)
	if err != nil {
		return err
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	defer memlimit.Start(int64(sf.memoryLimit), logger)()
	if certDir, created := n.Quickstart(); certDir != "" {
		printQuickstart(e.stderr, n.Addr(), sf.dataDir, certDir, created)
	}
	return n.Run(ctx)
}

// config checks the flags against each other (mistakes are usage errors)
// and turns them into the node's configuration.
func (sf *serveFlags) config(logger *slog.Logger) (node.Config, error) {
	syncPolicy, err := logstore.ParseSyncPolicy(sf.sync)
	if err != nil {
		return node.Config{}, usageError{err}
	}
	if _, _, err := net.SplitHostPort(sf.addr); err != nil {
		return node.Config{}, usagef("--addr %q: want host:port", sf.addr)
	}
	if sf.maxRecordBytes < 1 || sf.maxMessageBytes < sf.maxRecordBytes+1024 {
		return node.Config{}, usagef("--max-message-bytes (%s) must exceed --max-record-bytes (%s) by at least 1KiB of framing",
			sf.maxMessageBytes.String(), sf.maxRecordBytes.String())
	}
	if sf.maxMessageBytes > 1<<30 {
		return node.Config{}, usagef("--max-message-bytes must be at most 1GiB")
	}
	limits, err := sf.limits.limits()
	if err != nil {
		return node.Config{}, err
	}
	cs, err := sf.cluster.resolve(sf.addr, sf.insecure, os.ReadFile)
	if err != nil {
		return node.Config{}, err
	}
	quickstart := !sf.insecure && sf.tlsCert == "" && sf.tlsKey == "" && sf.tlsCA == ""
	switch {
	case sf.insecure && (sf.tlsCert != "" || sf.tlsKey != "" || sf.tlsCA != ""):
		return node.Config{}, usagef("--insecure cannot be combined with --tls-cert, --tls-key or --tls-ca")
	case !sf.insecure && !quickstart && (sf.tlsCert == "" || sf.tlsKey == ""):
		return node.Config{}, usagef("--tls-cert and --tls-key are both needed (or none of the TLS flags, for the quickstart)")
	case cs.gossip && !quickstart && sf.tlsCA == "":
		return node.Config{}, usagef("a cluster node that gossips needs --tls-ca: nodes verify each other's certificates against it")
	}

	// The registry, with the Go and process collectors, is main's; the
	// node registers its own metrics in it.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	store := logstore.DefaultConfig()
	store.MaxSegmentBytes = int64(sf.segmentBytes)
	store.MaxRecordBytes = int(sf.maxRecordBytes)
	store.Sync = syncPolicy
	store.SyncInterval = sf.syncInterval
	store.RetentionBytes = int64(sf.retentionBytes)
	store.RetentionAge = sf.retentionAge
	store.DropBehind = int64(sf.pageCacheTail)
	cfg := node.Config{
		// Off unless the OTEL_* environment configures an exporter.
		Tracing:             &tracing.Config{},
		DataDir:             sf.dataDir,
		Addr:                sf.addr,
		NodeID:              sf.nodeID,
		Version:             versionString(),
		Insecure:            sf.insecure,
		TLSCert:             sf.tlsCert,
		TLSKey:              sf.tlsKey,
		TLSCA:               sf.tlsCA,
		ACL:                 sf.aclPath,
		ACLPoll:             sf.aclPoll,
		TLSPoll:             sf.tlsPoll,
		Store:               store,
		StoreSyncSet:        sf.syncSet,
		MaxMessageBytes:     int(sf.maxMessageBytes),
		SlowConsumerTimeout: sf.slowConsumer,
		Limits:              limits,
		ShutdownTimeout:     sf.shutdownTimeout,
		Dashboard:           web.Handler(),
		Logger:              logger,
		Registerer:          reg,
		Gatherer:            reg,
	}
	if cs.raft {
		cfg.Cluster = sf.cluster.config(cs)
	}
	return cfg, nil
}

// printQuickstart tells a person how to reach the development node.
func printQuickstart(w io.Writer, addr, dataDir, certDir string, created bool) {
	host, port, _ := net.SplitHostPort(addr)
	switch host {
	case "", "0.0.0.0", "::", "127.0.0.1", "::1":
		host = "localhost" // the name the development certificate covers
	}
	target := net.JoinHostPort(host, port)
	p := func(name string) string { return filepath.Join(certDir, name) }
	what := "Reusing"
	if created {
		what = "Created"
	}
	dataFlag := ""
	if filepath.Clean(dataDir) != "data" {
		dataFlag = " --data-dir " + dataDir
	}
	if addr != defaultAddr {
		dataFlag += " --addr " + addr
	}
	fmt.Fprintf(w, `
proglog quickstart. %s the development identity in %s
  Produce and consume:
    proglog produce%s hello
    proglog consume%s --follow
  grpcurl:
    grpcurl -cacert %s -cert %s -key %s %s list
  Dashboard: https://%s/
    Import %s into your browser (password %q) and trust %s as a CA.

`, what, certDir, dataFlag, dataFlag,
		p(pki.DevCAFile), p(pki.DevClientFile), p(pki.DevClientKeyFile), target,
		target, p(pki.DevClientP12File), pki.DevP12Password, p(pki.DevCAFile))
}

// defaultAddr is where serve listens and the client commands connect by default.
const defaultAddr = "127.0.0.1:8400"
