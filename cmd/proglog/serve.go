package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/web"
)

// quickstartPolicy lets the development identity do everything.
const quickstartPolicy = "# proglog ACL: p, <subject>, <object: log or *>, <action: produce|consume|admin|*>\n" +
	"# Written by the quickstart; the development client certificate is \"root\".\n" +
	"p, root, *, *\n"

type serveFlags struct {
	addr, dataDir, aclPath, nodeID string
	insecure                       bool
	tlsCert, tlsKey, tlsCA         string
	logLevel, logFormat            string
	maxRecordBytes, segmentBytes   byteSize
	maxMessageBytes                byteSize
	slowConsumer                   time.Duration
	sync                           string
	syncInterval                   time.Duration
	retentionBytes                 byteSize
	retentionAge                   time.Duration
	aclPoll                        time.Duration
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
	sf := serveFlags{maxRecordBytes: 1 << 20, maxMessageBytes: 8 << 20, segmentBytes: 64 << 20}
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
	sf.cluster.register(f)
	sf.limits.register(f)
	return cmd
}

func serve(ctx context.Context, e *env, sf serveFlags) error {
	logger, err := newLogger(e.stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return err
	}
	syncPolicy, err := logstore.ParseSyncPolicy(sf.sync)
	if err != nil {
		return usageError{err}
	}
	if _, _, err := net.SplitHostPort(sf.addr); err != nil {
		return usagef("--addr %q: want host:port", sf.addr)
	}
	if sf.maxRecordBytes < 1 || sf.maxMessageBytes < sf.maxRecordBytes+1024 {
		return usagef("--max-message-bytes (%s) must exceed --max-record-bytes (%s) by at least 1KiB of framing",
			sf.maxMessageBytes.String(), sf.maxRecordBytes.String())
	}
	if sf.maxMessageBytes > 1<<30 {
		return usagef("--max-message-bytes must be at most 1GiB")
	}
	limits, err := sf.limits.limits()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sf.dataDir, 0o700); err != nil {
		return err
	}

	// Listen first: with port 0 the real address is known before it is
	// advertised (GetServers, the quickstart banner).
	ln, err := net.Listen("tcp", sf.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	restarted, err := hasRaftState(sf.dataDir)
	if err != nil {
		return err
	}
	cs, err := sf.cluster.resolve(sf.addr, addr, sf.insecure, restarted, os.ReadFile)
	if err != nil {
		return err
	}
	clustered := cs.raft
	if !clustered && restarted {
		return usagef("%s holds Raft state, and --insecure serves a standalone log without Raft "+
			"(serving it standalone would make it diverge from its cluster): start it with TLS", filepath.Join(sf.dataDir, "raft"))
	}
	if clustered {
		addr = cs.advertise
	}

	quickstart := !sf.insecure && sf.tlsCert == "" && sf.tlsKey == "" && sf.tlsCA == ""
	aclPath := sf.aclPath
	if aclPath == "" {
		aclPath = filepath.Join(sf.dataDir, "acl.csv")
	}
	var (
		tlsConfig                 *tls.Config
		certFile, keyFile, caFile string // the node's identity, for dialing peers
	)
	switch {
	case sf.insecure:
		if sf.tlsCert != "" || sf.tlsKey != "" || sf.tlsCA != "" {
			return usagef("--insecure cannot be combined with --tls-cert, --tls-key or --tls-ca")
		}
		logger.Warn("!!! --insecure: serving PLAINTEXT HTTP/2 with NO TLS and NO client authentication; " +
			"every caller is \"anonymous\", and anyone who can reach the port sees and sends data in the clear. Development only.")
	case quickstart:
		certDir := filepath.Join(sf.dataDir, "certs")
		created, err := pki.EnsureDevIdentity(certDir)
		if err != nil {
			return err
		}
		wroteACL, err := writeIfMissing(aclPath, quickstartPolicy)
		if err != nil {
			return err
		}
		if created || wroteACL {
			logger.Info("quickstart: created the development identity", "certs", certDir, "acl", aclPath)
		}
		certFile, keyFile, caFile = filepath.Join(certDir, pki.DevServerFile),
			filepath.Join(certDir, pki.DevServerKeyFile), filepath.Join(certDir, pki.DevCAFile)
		if tlsConfig, err = pki.ServerTLSConfig(certFile, keyFile, caFile); err != nil {
			return err
		}
		printQuickstart(e.stderr, addr, sf.dataDir, certDir, created)
	default:
		if sf.tlsCert == "" || sf.tlsKey == "" {
			return usagef("--tls-cert and --tls-key are both needed (or none of the TLS flags, for the quickstart)")
		}
		if sf.tlsCA == "" {
			logger.Warn("no --tls-ca: client certificates are not accepted, every caller is \"anonymous\"")
		}
		if tlsConfig, err = pki.ServerTLSConfig(sf.tlsCert, sf.tlsKey, sf.tlsCA); err != nil {
			return err
		}
		certFile, keyFile, caFile = sf.tlsCert, sf.tlsKey, sf.tlsCA
	}

	policy, err := acl.NewFile(aclPath, logger)
	if err != nil {
		return fmt.Errorf("%w (an ACL policy file is required: deny by default; see proglog serve --help)", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	lcfg := logstore.DefaultConfig()
	lcfg.MaxSegmentBytes = int64(sf.segmentBytes)
	lcfg.MaxRecordBytes = int(sf.maxRecordBytes)
	lcfg.Sync = syncPolicy
	lcfg.SyncInterval = sf.syncInterval
	lcfg.RetentionBytes = int64(sf.retentionBytes)
	lcfg.RetentionAge = sf.retentionAge
	lcfg.Logger = logger.With("component", "logstore")
	lcfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"log": "records"}, reg) // as a cluster node labels its store
	logDir := filepath.Join(sf.dataDir, "log")
	scfg := service.Config{
		Authorizer:          policy,
		NodeID:              sf.nodeID,
		Version:             versionString(),
		RPCAddr:             addr,
		MaxRecordBytes:      int(sf.maxRecordBytes),
		MaxMessageBytes:     int(sf.maxMessageBytes),
		SlowConsumerTimeout: sf.slowConsumer,
		Dashboard:           web.Handler(),
		Logger:              logger,
		Registerer:          reg,
		Gatherer:            reg,
	}
	srvCfg := service.ServerConfig{TLS: tlsConfig, Logger: logger, Limits: limits, Registerer: reg}
	var (
		member *node
		ncfg   nodeConfig
	)
	if clustered {
		dial, err := nodeTLS(certFile, keyFile, caFile, cs.gossip)
		if err != nil {
			return err
		}
		ncfg = nodeConfig{id: sf.nodeID, dataDir: sf.dataDir, flags: &sf.cluster, settings: cs, dial: dial,
			store: lcfg, syncSet: sf.syncSet, restarted: restarted, logger: logger, reg: reg}
		if member, err = openNode(ncfg); err != nil {
			return err
		}
		scfg.Log = member.log
		scfg.Nodes = member.servers
		scfg.Forward = member.forward.Forward
		srvCfg.Handoffs = map[string]func(*tls.Conn){cluster.ALPN: member.layer.Handoff}
		// Shutdown waits for handed-off connections; peers' Raft connections
		// end with serving, this node's own dials (to hand leadership over)
		// go on.
		srvCfg.OnShutdown = member.layer.CloseInbound
	} else {
		l, err := logstore.Open(logDir, lcfg)
		if err != nil {
			return err
		}
		defer func() {
			if err := l.Close(); err != nil {
				logger.Error("closing the log", "err", err)
			}
		}()
		scfg.Log = l
	}
	closeMember := func(graceful bool) {
		if member == nil {
			return
		}
		if err := member.close(graceful); err != nil {
			logger.Error("closing the cluster node", "err", err)
		}
		member = nil
	}
	defer closeMember(false) // on errors; a graceful shutdown closes it below

	svc, err := service.New(scfg)
	if err != nil {
		return err
	}
	srvCfg.Handler = svc.Handler()
	srv := service.NewServer(srvCfg)

	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	var polls sync.WaitGroup
	polls.Go(func() { policy.Run(pollCtx, sf.aclPoll) })
	if member != nil {
		m := member // closeMember clears member; the watcher stops first
		polls.Go(func() { m.reportWritable(pollCtx, svc) })
	}
	defer func() {
		stopPoll()
		polls.Wait()
	}()

	if member != nil {
		if servers, err := member.log.Servers(); err == nil && len(servers) == 1 && servers[0].ID == sf.nodeID {
			// A one-member cluster needs no peer to elect itself, so it
			// serves once it has applied its whole Raft log: its store may
			// lack records it acknowledged before a crash (they are written
			// behind applying), and clients must not see less than that.
			cctx, cancel := context.WithTimeout(ctx, 10*sf.cluster.raftTimeout+time.Minute)
			if err := member.log.CatchUp(cctx); err != nil {
				logger.Warn("serving before catching up with the Raft log", "err", err)
			}
			cancel()
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if member != nil && cs.gossip {
		// Gossip starts once the port serves Raft: joining makes the
		// leader add this node and dial it.
		if err := member.join(ncfg); err != nil {
			_ = srv.Shutdown(context.WithoutCancel(ctx))
			<-serveErr
			closeMember(false)
			if !restarted && len(sf.cluster.join) > 0 {
				// Nobody knows this node yet and Raft holds no state: leave
				// the dir as it was, so the next start is a first start too.
				if rerr := os.RemoveAll(filepath.Join(sf.dataDir, "raft")); rerr != nil {
					logger.Warn("removing the raft directory of the failed start", "err", rerr)
				}
			}
			return err
		}
		logger.Info("cluster member", "advertise", cs.advertise, "gossip", cs.gossipAddr, "join", sf.cluster.join)
	}
	logger.Info("serving", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "data", logDir,
		"acl", aclPath, "sync", syncDescription(syncPolicy, clustered, sf.syncSet), "node", sf.nodeID, "cluster", clustered, "version", versionString())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sf.shutdownTimeout)
	defer cancel()
	svc.SetServing(false)
	shutdownErr := srv.Shutdown(shutdownCtx)
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("serve", "err", err)
	}
	// Serving stopped: hand leadership over, leave the cluster, stop Raft.
	closeMember(true)
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}

// writeIfMissing creates path with text unless it exists.
func writeIfMissing(path, text string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
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

// syncDescription says what makes an acknowledged record durable.
func syncDescription(p logstore.SyncPolicy, clustered, set bool) string {
	if clustered && !set {
		return "raft log fsynced on a quorum (store: at each segment's end and every minute)"
	}
	return p.String()
}
