package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
	dial        *tls.Config // pki.Reloader.DialConfig: what the node dials its peers with
	restarted   bool        // the data dir had Raft state before this start
	logger      *slog.Logger
	reg         prometheus.Registerer
	tp          trace.TracerProvider // nil: tracing off

	layer   *cluster.StreamLayer
	log     *cluster.Log
	catalog *catalog.Catalog // the topics, kept by log (the system group)
	topics  *topics.Manager  // the partitions this node hosts
	forward *service.Forwarder
	// diskWatch probes free space for log and the partitions; closed
	// after them.
	diskWatch *cluster.DiskWatch
	// members is the gossip agent, set by join; nil without gossip.
	// Atomic: RPCs (RemoveNode) read it while join sets it.
	members atomic.Pointer[membership.Membership]
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

// open starts Raft. Gossip starts later, in join, once the TLS port serves
// the Raft connections the leader opens when it adds this node.
func (m *member) open(store logstore.Config, storeSyncSet bool) (err error) {
	// One disk probe a second for the system group and every partition.
	watch := cluster.NewDiskWatch()
	defer func() {
		if err != nil {
			watch.Close()
		}
	}()
	layer, err := cluster.NewStreamLayer(m.advertise, m.dial, m.logger.With("component", "raft-stream"))
	if err != nil {
		return err
	}
	fwd, err := service.NewForwarder(m.id, m.advertise, m.dial, service.WithForwardTracing(m.tp))
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
		DiskWatch:          watch,
		Logger:             m.logger, // raft's lines carry component=raft
		Registerer:         m.reg,
		FetchRecord:        fwd.FetchRecord, // heal a damaged record from a peer's copy
		TracerProvider:     m.tp,
	}
	if m.tp != nil {
		ccfg.SpanAttributes = []attribute.KeyValue{attribute.String("proglog.topic", catalog.DefaultTopic), attribute.Int("proglog.partition", 0)}
	}
	// Partitions' groups run like the system group, without its catalogue
	// or metrics; they heal records by topic (topics.Config.FetchRecord).
	pcfg := ccfg
	pcfg.Registerer, pcfg.FetchRecord, pcfg.SpanAttributes = nil, nil, nil
	pcfg.CommitTimeout = m.cfg.PartitionCommitTimeout // 0: raft's default
	// A partition elects its first leader about as fast as the system
	// group (but not before its lease: raft cannot change the lease
	// later, so it is half the settled timeout from the start, raft's own
	// ratio), then heartbeats at its own pace (cluster.Config's
	// SettledTimeout; ignored when not longer than the first timeouts).
	pt := m.cfg.PartitionRaftTimeout
	if pt == 0 {
		pt = defaultPartitionTimeout(t)
	}
	first := min(pt, max(t, pt/2))
	pcfg.HeartbeatTimeout, pcfg.ElectionTimeout, pcfg.LeaderLeaseTimeout, pcfg.SettledTimeout = first, first, pt/2, pt
	pcfg.RaftTransport = m.cfg.PartitionTransport
	ccfg.Meta = cat
	cl, err := cluster.New(ccfg)
	if errors.Is(err, cluster.ErrRaftLogCorrupt) && m.cfg.RecoverFromPeers {
		// The failed start closed the stream layer with its transport.
		if err = m.recoverFromPeers(fwd, err); err == nil {
			layer, err = cluster.NewStreamLayer(m.advertise, m.dial, m.logger.With("component", "raft-stream"))
		}
		if err == nil {
			cat = catalog.New()
			ccfg.Meta, ccfg.Stream, pcfg.Stream = cat, layer, layer
			cl, err = cluster.New(ccfg)
		}
	}
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
		if errors.Is(err, cluster.ErrRaftLogCorrupt) && !m.cfg.RecoverFromPeers {
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
		PeerReplica: func(ctx context.Context, addr, topic string, partition int) (topics.PeerReplica, error) {
			st, err := fwd.PartitionStats(ctx, addr, topic, partition)
			if err != nil {
				return topics.PeerReplica{}, err
			}
			return topics.PeerReplica{NodeID: st.GetNodeId(), Next: st.GetNextOffset(), Voters: st.GetVoters()}, nil
		},
		Alive:       m.alive,
		Registerer:  m.reg,
		OwnRaftLogs: m.cfg.PartitionOwnRaftLogs,
		Logger:      m.logger.With("component", "topics"),
	})
	if err != nil {
		cl.Close()
		return err
	}
	m.layer, m.log, m.catalog, m.topics, m.forward, m.diskWatch = layer, cl, cat, mgr, fwd, watch
	return nil
}

// defaultPartitionTimeout is a partition's settled Raft timeout for the
// system group's t (ClusterConfig.RaftTimeout): 2.5 × t, so with the
// default 1 s a partition's idle leader heartbeats its followers every
// 250-500 ms, not 100-200 ms, and a dead one is replaced after 2.5-5 s; a
// new partition elects its first leader after 1.25-2.5 s (its lease, half
// the settled timeout, bounds the first timeouts from below).
func defaultPartitionTimeout(t time.Duration) time.Duration { return t * 5 / 2 }

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
			"a node that left the cluster (stopped with --leave-on-terminate, or removed) needs --join with a live member's gossip address")
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
	m.members.Store(ms)
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

// leave stops gossip; announce, it first announces the departure, and the
// leader then removes this node from Raft.
func (m *member) leave(announce bool) {
	ms := m.members.Load()
	if ms == nil {
		return
	}
	if announce {
		// Leave also stops gossip.
		if err := ms.Leave(); err != nil {
			m.logger.Warn("leaving the cluster", "err", err)
		}
		return
	}
	if err := ms.Close(); err != nil {
		m.logger.Error("closing the cluster node", "err", err)
	}
}

// alive lists the members gossip sees alive, or nil before gossip runs.
func (m *member) alive() map[string]bool {
	ms := m.members.Load()
	if ms == nil {
		return nil
	}
	out := map[string]bool{}
	for _, mem := range ms.Members() {
		if mem.Status == "alive" {
			out[mem.ID] = true
		}
	}
	return out
}

// removeNode answers RemoveNode: it removes id, a node that is down, from
// Raft and gossip (on the leader; elsewhere the *cluster.NotLeaderError
// sends the call there), and lists the partitions still placed on it.
func (m *member) removeNode(ctx context.Context, id string) ([]service.PartitionRef, error) {
	ms := m.members.Load()
	if ms == nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("node %q: this node has not joined the cluster's gossip yet", id))
	}
	if err := ms.Remove(ctx, id); err != nil {
		switch {
		case errors.Is(err, membership.ErrUnknownMember):
			return nil, connect.NewError(connect.CodeNotFound, err)
		case errors.Is(err, membership.ErrAlive), errors.Is(err, membership.ErrNoLiveMajority), errors.Is(err, membership.ErrSelf):
			return nil, connect.NewError(connect.CodeFailedPrecondition, err)
		case errors.Is(err, membership.ErrClosed):
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		return nil, err
	}
	var stranded []service.PartitionRef
	for _, ref := range m.catalog.View().Hosted(id) {
		stranded = append(stranded, service.PartitionRef{Topic: ref.Topic.Name, Partition: ref.Partition})
	}
	return stranded, nil
}

// close stops forwarding and Raft.
func (m *member) close() {
	m.forward.Close()
	if err := m.log.Close(); err != nil {
		m.logger.Error("closing the cluster node", "err", err)
	}
	m.diskWatch.Close()
}

// reportHealth keeps the health check's WritesHealthService in step with
// whether the node takes writes (NOT_SERVING while its disk is full, after
// it failed to apply, or while its store cannot be written), and its
// ReadyHealthService with whether it serves the system group and every
// partition placed on it, until ctx ends. Readiness is reported only once
// the node has joined (ready is closed).
func (m *member) reportHealth(ctx context.Context, svc *service.Service, joined <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var notReady string // the reason last logged
	var peers []peer    // as last saved
	for {
		svc.SetWritable(m.log.CanWrite() == nil)
		peers = m.savePeers(peers)
		select {
		case <-joined:
			err := m.log.Ready()
			if err == nil {
				err = m.topics.Ready()
			}
			svc.SetReady(err == nil)
			switch {
			case err != nil && err.Error() != notReady:
				notReady = err.Error()
				m.logger.Debug("not ready", "reason", notReady)
			case err == nil && notReady != "":
				notReady = ""
				m.logger.Info("ready: serving the system group and every partition placed here")
			}
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
