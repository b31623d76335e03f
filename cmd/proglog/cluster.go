package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/membership"
	"github.com/proglog/proglog/service"
)

// defaultGossipPort is the gossip port when --gossip-addr is not given.
const defaultGossipPort = "8401"

// clusterFlags are serve's replication flags. Every node that serves TLS
// runs Raft: without --join it starts (and on restarts stays) a cluster of
// its own, one member until others join it. Gossip, through which others
// join, runs when the node has the cluster's gossip key.
type clusterFlags struct {
	bootstrap     bool
	join          []string
	gossipAddr    string
	gossipKey     string
	gossipKeyFile string
	advertiseAddr string
	raftTimeout   time.Duration
	// Raft snapshots: how many entries since the last one trigger the next,
	// how often that is checked, and how many entries compaction keeps.
	snapshotThreshold uint64
	snapshotBytes     byteSize
	trailingBytes     byteSize
	snapshotInterval  time.Duration
	trailingLogs      uint64
	// reapFailedAfter is how long a member may stay failed before the
	// leader removes it (0 = never).
	reapFailedAfter time.Duration
	// diskReserve: free space below which appends are refused; unset
	// (diskReserveSet false) means twice --segment-bytes, 0 none.
	diskReserve    byteSize
	diskReserveSet bool
}

func (c *clusterFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&c.bootstrap, "bootstrap", false, "start a new cluster with this node as its first member (what a node without --join does anyway; kept so a first node's flags say so)")
	f.StringSliceVar(&c.join, "join", nil, "gossip addresses (host:port) of existing cluster members to join (repeat or comma-separate)")
	f.StringVar(&c.gossipAddr, "gossip-addr", "", "address for cluster gossip, UDP and TCP (default: the host of --addr, port "+defaultGossipPort+")")
	f.StringVar(&c.gossipKey, "gossip-key", "", "cluster gossip encryption key, base64 of 32 bytes (make one: openssl rand -base64 32); turns gossip on so other nodes can join. "+
		"The key lets a node gossip, not vote: the leader makes a member a voter only once it presents, at the address it advertises, a server certificate of this node's --tls-ca valid for that address")
	f.StringVar(&c.gossipKeyFile, "gossip-key-file", "", "file holding the base64 gossip key")
	f.StringVar(&c.advertiseAddr, "advertise-addr", "", "address (host:port) other nodes and clients reach this node's TLS port at (default: the listen address)")
	f.DurationVar(&c.raftTimeout, "raft-timeout", time.Second, "Raft heartbeat and election timeout: a dead leader is replaced after about this long")
	f.Uint64Var(&c.snapshotThreshold, "raft-snapshot-threshold", 1<<20, "Raft entries since the last snapshot that make the node take the next one (a backstop: --raft-snapshot-bytes usually comes first, and every snapshot starts a new store segment)")
	c.snapshotBytes = 64 << 20
	f.Var(&c.snapshotBytes, "raft-snapshot-bytes", "take a Raft snapshot once the entries since the last one hold this many bytes (0 = only by --raft-snapshot-threshold); bounds what a restart replays")
	f.DurationVar(&c.snapshotInterval, "raft-snapshot-interval", 2*time.Minute, "how often the node checks --raft-snapshot-threshold")
	f.Uint64Var(&c.trailingLogs, "raft-trailing-logs", 10240, "Raft entries kept after a snapshot, so a follower just behind gets entries rather than the snapshot")
	c.trailingBytes = 64 << 20
	f.Var(&c.trailingBytes, "raft-trailing-bytes", "keep about this many bytes of Raft entries after a snapshot, at most --raft-trailing-logs of them (0 = by count only)")
	f.DurationVar(&c.reapFailedAfter, "reap-failed-after", 5*time.Minute, "the leader removes a member that has been unreachable (failed in gossip) this long from Raft and gossip, "+
		"if the voters left alive are a majority without it; it rejoins when it comes back (0 = never remove failed members)")
	f.Var(&c.diskReserve, "disk-reserve", "refuse produces (ResourceExhausted, \"disk full\") while the data dir's disk has less free space than this; they resume by themselves once space is freed (default: twice --segment-bytes; 0: only when a write fails for want of space)")
}

// diskReserveBytes is --disk-reserve as cluster.Config.DiskReserve.
func (c *clusterFlags) diskReserveBytes() int64 {
	switch {
	case !c.diskReserveSet:
		return 0 // cluster's default: twice the segment size
	case c.diskReserve == 0:
		return -1
	}
	return int64(c.diskReserve)
}

// gossip says whether the node runs gossip: it joins others or lets them join it.
func (c *clusterFlags) gossip() bool {
	return len(c.join) > 0 || c.gossipKey != "" || c.gossipKeyFile != ""
}

// clusterSettings are the checked cluster flags.
type clusterSettings struct {
	raft       bool // false only with --insecure: a standalone log
	gossip     bool
	gossipAddr string
	advertise  string
	key        []byte
}

// resolve checks the cluster flags against each other. addr is --addr as
// given; listened is the address the listener got (port 0 resolved);
// restarted says the data dir already has Raft state.
func (c *clusterFlags) resolve(addr, listened string, insecure, restarted bool, readFile func(string) ([]byte, error)) (clusterSettings, error) {
	var s clusterSettings
	if insecure {
		if c.bootstrap || c.gossip() || c.gossipAddr != "" || c.advertiseAddr != "" {
			return s, usagef("a cluster needs TLS (nodes authenticate each other with certificates): drop --insecure")
		}
		return s, nil
	}
	s.raft = true
	if c.bootstrap && len(c.join) > 0 && !restarted {
		// Once the node has state --bootstrap is ignored, so the first
		// node may be restarted with the flags it began with plus --join.
		return s, usagef("--bootstrap starts a new cluster and --join joins an existing one: give one of them on a node's first start")
	}
	if c.raftTimeout < 10*time.Millisecond {
		return s, usagef("--raft-timeout %v is too short", c.raftTimeout)
	}
	if c.reapFailedAfter < 0 {
		return s, usagef("--reap-failed-after must not be negative (0 never removes failed members)")
	}
	if c.snapshotBytes < 0 || c.trailingBytes < 0 {
		return s, usagef("--raft-snapshot-bytes and --raft-trailing-bytes must not be negative")
	}
	if c.snapshotThreshold < 1 || c.snapshotInterval < 5*time.Millisecond {
		return s, usagef("--raft-snapshot-threshold must be at least 1 and --raft-snapshot-interval at least 5ms")
	}
	for _, j := range c.join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return s, usagef("--join %q: want the host:port of a member's gossip address", j)
		}
	}

	s.advertise = c.advertiseAddr
	if s.advertise == "" {
		s.advertise = listened
	}
	host, port, err := net.SplitHostPort(s.advertise)
	if err != nil {
		return s, usagef("--advertise-addr %q: want host:port", s.advertise)
	}
	if !c.gossip() {
		if c.gossipAddr != "" {
			return s, usagef("--gossip-addr needs the cluster's gossip key (--gossip-key or --gossip-key-file): gossip is how other nodes join this one")
		}
		return s, nil
	}
	s.gossip = true
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) || port == "0" {
		return s, usagef("other nodes cannot dial %q: set --advertise-addr to the host:port they reach this node at", s.advertise)
	}

	s.gossipAddr = c.gossipAddr
	if s.gossipAddr == "" {
		host, _, _ := net.SplitHostPort(addr)
		s.gossipAddr = net.JoinHostPort(host, defaultGossipPort)
	}
	if _, _, err := net.SplitHostPort(s.gossipAddr); err != nil {
		return s, usagef("--gossip-addr %q: want host:port", s.gossipAddr)
	}

	encoded := c.gossipKey
	switch {
	case c.gossipKey != "" && c.gossipKeyFile != "":
		return s, usagef("give --gossip-key or --gossip-key-file, not both")
	case c.gossipKeyFile != "":
		b, err := readFile(c.gossipKeyFile)
		if err != nil {
			return s, usagef("--gossip-key-file: %v", err)
		}
		encoded = strings.TrimSpace(string(b))
	case c.gossipKey == "":
		return s, usagef("--join needs the cluster's gossip key: --gossip-key or --gossip-key-file (make one with: openssl rand -base64 32)")
	}
	if s.key, err = membership.ParseKey(encoded); err != nil {
		return s, usagef("gossip key: %v", err)
	}
	return s, nil
}

// nodeTLS is what a node dials its peers with (Raft and forwarded appends):
// its own server certificate, which is valid for client authentication,
// and the cluster's CA. A node without gossip has no peers to dial: it
// may run without --tls-ca, and then trusts no peer at all.
func nodeTLS(certFile, keyFile, caFile string, gossip bool) (*tls.Config, error) {
	if caFile == "" && gossip {
		return nil, usagef("a cluster node that gossips needs --tls-ca: nodes verify each other's certificates against it")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if caFile == "" {
		return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}, nil
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster CA %s: no certificate found", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// hasRaftState reports whether dataDir belongs to a node that has been in
// a cluster.
func hasRaftState(dataDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dataDir, "raft"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// node is a running cluster member: the replicated log, its gossip agent
// and the client that forwards appends to the leader.
type node struct {
	layer   *cluster.StreamLayer
	log     *cluster.Log
	members *membership.Membership
	forward *service.Forwarder
	logger  *slog.Logger
}

type nodeConfig struct {
	id, dataDir string
	flags       *clusterFlags
	settings    clusterSettings
	dial        *tls.Config
	store       logstore.Config
	syncSet     bool
	restarted   bool // the data dir had Raft state before this start
	logger      *slog.Logger
	reg         prometheus.Registerer
}

// openNode starts Raft. Gossip starts later, in join, once the TLS port
// serves the Raft connections the leader opens when it adds this node.
func openNode(cfg nodeConfig) (*node, error) {
	logger := cfg.logger
	layer, err := cluster.NewStreamLayer(cfg.settings.advertise, cfg.dial, logger.With("component", "raft-stream"))
	if err != nil {
		return nil, err
	}
	t := cfg.flags.raftTimeout
	cl, err := cluster.New(cluster.Config{
		NodeID:             cfg.id,
		DataDir:            cfg.dataDir,
		Bootstrap:          len(cfg.flags.join) == 0, // ignored once the node has state
		Stream:             layer,
		Store:              cfg.store,
		StoreSyncSet:       cfg.syncSet,
		Alone:              !cfg.settings.gossip, // without gossip no one can join
		HeartbeatTimeout:   t,
		ElectionTimeout:    t,
		LeaderLeaseTimeout: t / 2,
		SnapshotThreshold:  cfg.flags.snapshotThreshold,
		SnapshotInterval:   cfg.flags.snapshotInterval,
		SnapshotBytes:      orOff(cfg.flags.snapshotBytes),
		TrailingBytes:      orOff(cfg.flags.trailingBytes),
		TrailingLogs:       cfg.flags.trailingLogs,
		DiskReserve:        cfg.flags.diskReserveBytes(),
		Logger:             logger, // raft's lines carry component=raft
		Registerer:         cfg.reg,
	})
	if err != nil {
		layer.Close()
		if errors.Is(err, cluster.ErrExistingStore) {
			if !cfg.restarted {
				// Raft's directory was made just now and holds no state:
				// remove it, so the next start is a first start too.
				if rerr := os.RemoveAll(filepath.Join(cfg.dataDir, "raft")); rerr != nil {
					logger.Warn("removing the raft directory of the failed start", "err", rerr)
				}
			}
			return nil, fmt.Errorf("%w: %s holds records this node served before it ran Raft; a node that joins starts from an empty log "+
				"and receives the cluster's records through Raft. Give the joining node a fresh --data-dir, "+
				"or start this one without --join: it then keeps its records as the start of a new cluster that others can join", err, filepath.Join(cfg.dataDir, "log"))
		}
		if errors.Is(err, cluster.ErrRaftLogCorrupt) {
			return nil, raftLogCorruptAdvice(err, cfg.dataDir)
		}
		return nil, err
	}
	if len(cfg.flags.join) > 0 {
		if err := checkJoinable(cl, cfg.id, cfg.flags.join); err != nil {
			cl.Close()
			return nil, err
		}
	}
	fwd, err := service.NewForwarder(cfg.id, cfg.settings.advertise, cfg.dial)
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &node{layer: layer, log: cl, forward: fwd, logger: logger}, nil
}

// checkJoinable refuses --join on a node that runs a cluster of its own
// (started without --join, so it bootstrapped itself): two clusters cannot
// merge, their Raft logs disagree from the first entry.
func checkJoinable(cl *cluster.Log, id string, join []string) error {
	servers, err := cl.Servers()
	if err != nil {
		return err
	}
	if len(servers) == 1 && servers[0].ID == id {
		return usagef("this data dir holds a cluster of its own (the node once started without --join, so it bootstrapped one), "+
			"and two clusters cannot merge: start the node without --join to keep serving its cluster, or give it an empty --data-dir to join %s",
			strings.Join(join, ","))
	}
	return nil
}

// join starts gossip. A restarted node whose --join members are all down
// still starts: it has Raft state, and Serf rejoins the members it
// remembers in its snapshot as they come back.
func (n *node) join(cfg nodeConfig) error {
	mcfg := membership.Config{
		NodeID:       cfg.id,
		GossipAddr:   cfg.settings.gossipAddr,
		RPCAddr:      cfg.settings.advertise,
		Join:         cfg.flags.join,
		SnapshotPath: filepath.Join(cfg.dataDir, "serf.snapshot"),
		SecretKey:    cfg.settings.key,
		Handler:      n.log,
		// The leader adds a member as a voter only once it has shown a
		// server certificate of this node's CA for the address it gossips.
		Verify:          membership.TLSVerifier(cfg.dial),
		ReapFailedAfter: cfg.flags.reapFailedAfter,
		Logger:          cfg.logger, // serf's lines carry component=gossip
		Registerer:      cfg.reg,
	}
	if cfg.restarted && len(mcfg.Join) == 0 {
		n.logger.Info("no --join: rejoining the members the gossip snapshot remembers; " +
			"a node stopped gracefully (SIGINT/SIGTERM) has left the cluster and needs --join with a live member's gossip address")
	}
	m, err := membership.New(mcfg)
	if err != nil && cfg.restarted && len(mcfg.Join) > 0 {
		n.logger.Warn("could not reach any --join member; starting from the remembered members", "err", err)
		mcfg.Join = nil
		m, err = membership.New(mcfg)
	}
	if err != nil {
		return err
	}
	n.members = m
	return nil
}

// servers answers GetServers.
func (n *node) servers() ([]service.Node, error) {
	servers, err := n.log.Servers()
	if err != nil {
		return nil, err
	}
	out := make([]service.Node, len(servers))
	for i, s := range servers {
		out[i] = service.Node{ID: s.ID, RPCAddr: s.RPCAddr, IsLeader: s.IsLeader}
	}
	return out, nil
}

// close hands leadership over when this node leads, announces the
// departure (the leader then removes it from Raft) when graceful, and
// stops Raft. Call it after the server stopped serving.
func (n *node) close(graceful bool) error {
	if graceful && n.log.IsLeader() {
		// A one-member cluster has nobody to hand over to.
		if servers, err := n.log.Servers(); err == nil && len(servers) > 1 {
			if err := n.log.TransferLeadership(); err != nil {
				n.logger.Warn("handing leadership over", "err", err)
			}
		}
	}
	var errs []error
	switch {
	case n.members != nil && graceful:
		// Leave also stops gossip.
		if err := n.members.Leave(); err != nil {
			n.logger.Warn("leaving the cluster", "err", err)
		}
	case n.members != nil:
		errs = append(errs, n.members.Close())
	}
	n.forward.Close()
	errs = append(errs, n.log.Close())
	return errors.Join(errs...)
}

// raftLogCorruptAdvice says what an operator can do about a damaged Raft
// log, in one paragraph (the README's "A damaged Raft log" says the same).
// Nothing on disk has been changed when it is shown.
func raftLogCorruptAdvice(err error, dataDir string) error {
	raftDir, logDir := filepath.Join(dataDir, "raft"), filepath.Join(dataDir, "log")
	return fmt.Errorf("%w. This node's own Raft log is damaged, so it refused to start; nothing on disk was changed, and the log cannot be repaired in place. "+
		"In a cluster whose other members still have a leader: keep this node stopped, rename %s, %s and %s to <name>.broken, "+
		"and start it with a NEW --node-id and --join <a member's gossip address>: the leader replaces the old member at this address "+
		"and the node catches up from its peers (never restart it under its old --node-id without its log while the cluster still lists it: it would vote as if it still had it). "+
		"On a single node: rename %s to %s.broken and start it again: it adopts the records in %s as a new one-member cluster and loses only "+
		"records it had acknowledged but not yet written there (none after a clean stop, at most the last minute's after a machine crash)",
		err, raftDir, logDir, filepath.Join(dataDir, "serf.snapshot"), raftDir, raftDir, logDir)
}

// reportWritable keeps the health check's WritesHealthService in step with
// whether the node takes writes (NOT_SERVING while its disk is full) until
// ctx ends.
func (n *node) reportWritable(ctx context.Context, svc *service.Service) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := n.log.DiskFull()
		svc.SetWritable(err == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// orOff maps a byte flag where 0 means off to a cluster.Config field where
// 0 takes the default and a negative value means off.
func orOff(b byteSize) int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}
