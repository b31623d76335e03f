package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/membership"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/topics"
)

// member is this node's part in its cluster: the replicated log, the
// client that forwards appends to the leader and, once joined, the gossip
// agent.
type member struct {
	id, dataDir string
	advertise   string
	cfg         ClusterConfig
	dial        *tls.Config
	restarted   bool // the data dir had Raft state before this start
	logger      *slog.Logger
	reg         prometheus.Registerer

	layer   *cluster.StreamLayer
	log     *cluster.Log
	catalog *catalog.Catalog // the topics, kept by log (the system group)
	topics  *topics.Manager  // the partitions this node hosts
	forward *service.Forwarder
	members *membership.Membership // set by join; nil without gossip
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

// dialTLS is what a node dials its peers with (Raft and forwarded
// appends): its own server certificate, which is valid for client
// authentication, and the cluster's CA. A node without gossip has no peers
// to dial: it may run without a CA, and then trusts no peer at all.
func dialTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("cluster CA %s: no certificate found", caFile)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// open starts Raft. Gossip starts later, in join, once the TLS port serves
// the Raft connections the leader opens when it adds this node.
func (m *member) open(store logstore.Config, storeSyncSet bool) error {
	layer, err := cluster.NewStreamLayer(m.advertise, m.dial, m.logger.With("component", "raft-stream"))
	if err != nil {
		return err
	}
	fwd, err := service.NewForwarder(m.id, m.advertise, m.dial)
	if err != nil {
		layer.Close()
		return err
	}
	t := m.cfg.RaftTimeout
	cat := catalog.New()
	ccfg := cluster.Config{
		NodeID:             m.id,
		DataDir:            m.dataDir,
		Bootstrap:          len(m.cfg.Join) == 0, // ignored once the node has state
		Stream:             layer,
		Store:              store,
		StoreSyncSet:       storeSyncSet,
		Alone:              !m.cfg.gossip(), // without gossip no one can join
		HeartbeatTimeout:   t,
		ElectionTimeout:    t,
		LeaderLeaseTimeout: t / 2,
		SnapshotThreshold:  m.cfg.SnapshotThreshold,
		SnapshotInterval:   m.cfg.SnapshotInterval,
		SnapshotBytes:      m.cfg.SnapshotBytes,
		TrailingBytes:      m.cfg.TrailingBytes,
		TrailingLogs:       m.cfg.TrailingLogs,
		DiskReserve:        m.cfg.DiskReserve,
		Logger:             m.logger, // raft's lines carry component=raft
		Registerer:         m.reg,
		FetchRecord:        fwd.FetchRecord, // heal a damaged record from a peer's copy
	}
	// Partitions' groups run like the system group, without its catalogue
	// or metrics; they heal records by topic (topics.Config.FetchRecord).
	pcfg := ccfg
	pcfg.Registerer, pcfg.FetchRecord = nil, nil
	pcfg.CommitTimeout = m.cfg.PartitionCommitTimeout // 0: raft's default
	pcfg.RaftTransport = m.cfg.PartitionTransport
	ccfg.Meta = cat
	cl, err := cluster.New(ccfg)
	if err != nil {
		layer.Close()
		if errors.Is(err, cluster.ErrExistingStore) {
			if !m.restarted {
				// Raft's directory was made just now and holds no state:
				// remove it, so the next start is a first start too.
				m.removeRaftDir()
			}
			return existingStoreAdvice(err, m.dataDir)
		}
		if errors.Is(err, cluster.ErrRaftLogCorrupt) {
			return raftLogCorruptAdvice(err, m.dataDir)
		}
		return err
	}
	if len(m.cfg.Join) > 0 {
		if err := checkJoinable(cl, m.id, m.cfg.Join); err != nil {
			cl.Close()
			return err
		}
	}
	mgr, err := topics.New(topics.Config{
		NodeID:      m.id,
		DataDir:     filepath.Join(m.dataDir, "partitions"),
		Catalog:     cat,
		System:      cl,
		Partition:   pcfg,
		FetchRecord: fwd.FetchTopicRecord,
		PeerNext:    fwd.PartitionNext,
		Registerer:  m.reg,
		Logger:      m.logger.With("component", "topics"),
	})
	if err != nil {
		cl.Close()
		return err
	}
	m.layer, m.log, m.catalog, m.topics, m.forward = layer, cl, cat, mgr, fwd
	return nil
}

// removeRaftDir undoes a first start that failed: with no Raft state left
// behind, the next start is a first start too.
func (m *member) removeRaftDir() {
	if err := os.RemoveAll(filepath.Join(m.dataDir, "raft")); err != nil {
		m.logger.Warn("removing the raft directory of the failed start", "err", err)
	}
}

// checkJoinable refuses Join on a node that runs a cluster of its own
// (started without Join, so it bootstrapped itself): two clusters cannot
// merge, their Raft logs disagree from the first entry.
func checkJoinable(cl *cluster.Log, id string, join []string) error {
	servers, err := cl.Servers()
	if err != nil {
		return err
	}
	if len(servers) == 1 && servers[0].ID == id {
		return configErrorf("this data dir holds a cluster of its own (the node once started without --join, so it bootstrapped one), "+
			"and two clusters cannot merge: start the node without --join to keep serving its cluster, or give it an empty --data-dir to join %s",
			strings.Join(join, ","))
	}
	return nil
}

// catchUp makes a one-member cluster's node apply its whole Raft log
// before it serves. It needs no peer to elect itself, and its store may
// lack records it acknowledged before a crash (they are written behind
// applying): clients must not see less than that.
func (m *member) catchUp(ctx context.Context) {
	servers, err := m.log.Servers()
	if err != nil || len(servers) != 1 || servers[0].ID != m.id {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*m.cfg.RaftTimeout+time.Minute)
	defer cancel()
	if err := m.log.CatchUp(ctx); err != nil {
		m.logger.Warn("serving before catching up with the Raft log", "err", err)
	}
}

// join starts gossip. A restarted node whose Join members are all down
// still starts: it has Raft state, and Serf rejoins the members it
// remembers in its snapshot as they come back.
func (m *member) join() error {
	mcfg := membership.Config{
		NodeID:       m.id,
		GossipAddr:   m.cfg.GossipAddr,
		RPCAddr:      m.advertise,
		Join:         m.cfg.Join,
		SnapshotPath: filepath.Join(m.dataDir, "serf.snapshot"),
		SecretKey:    m.cfg.GossipKey,
		Handler:      m.log,
		// The leader adds a member as a voter only once it has shown a
		// server certificate of this node's CA for the address it gossips.
		Verify:          membership.TLSVerifier(m.dial),
		ReapFailedAfter: m.cfg.ReapFailedAfter,
		Logger:          m.logger, // serf's lines carry component=gossip
		Registerer:      m.reg,
	}
	if m.restarted && len(mcfg.Join) == 0 {
		m.logger.Info("no --join: rejoining the members the gossip snapshot remembers; " +
			"a node stopped gracefully (SIGINT/SIGTERM) has left the cluster and needs --join with a live member's gossip address")
	}
	ms, err := membership.New(mcfg)
	if err != nil && m.restarted && len(mcfg.Join) > 0 {
		m.logger.Warn("could not reach any --join member; starting from the remembered members", "err", err)
		mcfg.Join = nil
		ms, err = membership.New(mcfg)
	}
	if err != nil {
		return err
	}
	m.members = ms
	return nil
}

// servers answers GetServers.
func (m *member) servers() ([]service.Node, error) {
	servers, err := m.log.Servers()
	if err != nil {
		return nil, err
	}
	leaders := m.topics.Leaders()
	out := make([]service.Node, len(servers))
	for i, s := range servers {
		out[i] = service.Node{ID: s.ID, RPCAddr: s.RPCAddr, IsLeader: s.IsLeader, PartitionLeaders: leaders[s.ID]}
	}
	return out, nil
}

// handOver hands leadership to another voter when this node leads one.
func (m *member) handOver() {
	if !m.log.IsLeader() {
		return
	}
	// A one-member cluster has nobody to hand over to.
	if servers, err := m.log.Servers(); err == nil && len(servers) > 1 {
		if err := m.log.TransferLeadership(); err != nil {
			m.logger.Warn("handing leadership over", "err", err)
		}
	}
}

// leave stops gossip; graceful, it first announces the departure, and the
// leader then removes this node from Raft.
func (m *member) leave(graceful bool) {
	if m.members == nil {
		return
	}
	if graceful {
		// Leave also stops gossip.
		if err := m.members.Leave(); err != nil {
			m.logger.Warn("leaving the cluster", "err", err)
		}
		return
	}
	if err := m.members.Close(); err != nil {
		m.logger.Error("closing the cluster node", "err", err)
	}
}

// close stops forwarding and Raft.
func (m *member) close() {
	m.forward.Close()
	if err := m.log.Close(); err != nil {
		m.logger.Error("closing the cluster node", "err", err)
	}
}

// reportWritable keeps the health check's WritesHealthService in step with
// whether the node takes writes (NOT_SERVING while its disk is full, after
// it failed to apply, or while its store cannot be written) until ctx ends.
func (m *member) reportWritable(ctx context.Context, svc *service.Service) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		svc.SetWritable(m.log.CanWrite() == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
