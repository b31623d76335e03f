// Package topics runs a node's share of the cluster's topics: it keeps
// the partitions the catalogue places on this node running as Raft groups
// of their own (cluster.Log on a named group of the node's stream layer),
// stops and removes those it no longer hosts, and answers the service's
// questions about topics (service.Topics) from the catalogue and those
// groups. Catalogue changes go through the system group (ProposeMeta).
package topics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/raftwal"
	"github.com/proglog/proglog/service"
)

// Config configures a Manager.
type Config struct {
	NodeID string
	// DataDir holds a directory per hosted partition, named after its
	// Raft group: <DataDir>/t<topic ID>.p<partition>.
	DataDir string
	Catalog *catalog.Catalog
	// System is the system group: the catalogue's proposer, the default
	// topic's partition 0, and the source of the nodes' addresses.
	System *cluster.Log
	// Partition is the template of every partition's cluster.Config:
	// Stream, timings, snapshot and disk settings, Store. NodeID, DataDir,
	// Group, Voters, Bootstrap, Alone and the Store's retention and
	// maximum record size are set per partition.
	Partition cluster.Config
	// FetchRecord, when set, reads a record of a partition from the peer
	// at addr, so a replica heals a damaged record from another's copy
	// (cluster.Config.FetchRecord; a Forwarder's FetchTopicRecord).
	FetchRecord func(ctx context.Context, addr, topic string, partition int, offset uint64) (logstore.Record, error)
	// PeerReplica, when set, asks the node at addr about its replica of a
	// partition (GetStats): Move uses it to see a new replica catch up and
	// the old one leave the partition's Raft group. Without it Move cannot
	// move a replica to another node.
	PeerReplica func(ctx context.Context, addr, topic string, partition int) (PeerReplica, error)
	// Alive, when set, reports which nodes are alive (gossip's view; nil
	// when it has none yet): Create places new replicas on live nodes only,
	// so that a topic is not born with a replica on a node that is down.
	Alive func() map[string]bool
	// StartWait bounds how long CreateTopic waits for the partitions this
	// node hosts to elect leaders before it answers; default 10s.
	StartWait time.Duration
	Logger    *slog.Logger
	// Registerer, when set, gets the hosted partitions' metrics
	// (proglog_partition_*{topic,partition}) while Run runs.
	Registerer prometheus.Registerer
	// OwnRaftLogs gives each new partition group a Raft log of its own
	// (<DataDir>/<group>/raft/log, one fdatasync per group and write)
	// instead of keeping its entries in the node's shared WAL
	// (<DataDir>/wal, package raftwal), where one fdatasync covers the
	// entries every group stores at once. A group keeps its entries where
	// they are either way.
	OwnRaftLogs bool
}

// walDirName is the shared WAL's directory under Config.DataDir (not a
// partition's name: sweep leaves it alone).
const walDirName = "wal"

// Manager is a node's share of the topics; it implements service.Topics.
// Run starts and stops partitions until its context ends, then closes
// them.
type Manager struct {
	cfg    Config
	logger *slog.Logger

	// wal is the partition groups' shared Raft log (nil with OwnRaftLogs),
	// opened when Run starts and closed after every partition when it
	// returns.
	wal *raftwal.WAL

	mu      sync.Mutex // guards running and closed
	running map[string]*partition
	closed  bool
	// started is closed and replaced each time a partition starts, for
	// waiters in Create.
	started chan struct{}
}

// partition is one running partition group.
type partition struct {
	ref       catalog.PartitionRef
	log       *cluster.Log
	dir       string
	retention catalog.Config // as last applied to log
	// nextBalance is when balance may next hand this partition's
	// leadership to its preferred leader (guarded by Manager.mu, as ref).
	nextBalance time.Time
	// movedAway is when reconcile first found the catalogue no longer
	// placing this partition here while its topic exists (see retired).
	movedAway time.Time
}

var _ service.Topics = (*Manager)(nil)

// New makes a Manager; Run starts the partitions.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.NodeID == "" || cfg.DataDir == "" || cfg.Catalog == nil || cfg.System == nil || cfg.Partition.Stream == nil:
		return nil, errors.New("topics: NodeID, DataDir, Catalog, System and Partition.Stream are required")
	}
	if cfg.StartWait == 0 {
		cfg.StartWait = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, logger: cfg.Logger, running: map[string]*partition{}, started: make(chan struct{})}, nil
}

// retryEvery is how often Run tries again a partition that failed to start
// (a replica's address not yet known, a damaged directory).
const retryEvery = 2 * time.Second

// Run keeps the hosted partitions running as the catalogue changes, until
// ctx ends; then it hands over the leadership of the partitions this node
// leads and closes them all. Run is called once; the Manager is done when
// it returns.
func (m *Manager) Run(ctx context.Context) {
	// With OwnRaftLogs the WAL still serves the groups it holds entries of
	// (started before without it).
	if _, err := os.Stat(filepath.Join(m.cfg.DataDir, walDirName)); !m.cfg.OwnRaftLogs || err == nil {
		if !m.openWAL(ctx) {
			return
		}
		defer func() {
			if err := m.wal.Close(); err != nil {
				m.logger.Error("topics: closing the partitions' shared Raft log", "err", err)
			}
		}()
	}
	var balancer sync.WaitGroup
	defer m.closeAll()
	if reg := m.cfg.Registerer; reg != nil {
		c := newCollector(m)
		if err := reg.Register(c); err != nil {
			m.logger.Warn("topics: registering the partitions' metrics", "err", err)
		} else {
			defer reg.Unregister(c)
		}
	}
	defer balancer.Wait() // before closeAll: it transfers leaderships
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	balancer.Go(func() { m.balanceLoop(bctx) })
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		v := m.cfg.Catalog.View()
		m.reconcile(v)
		select {
		case <-ctx.Done():
			return
		case <-v.Changed():
		case <-t.C:
		}
	}
}

// openWAL opens the partition groups' shared Raft log, trying again every
// retryEvery while it fails (no partition can start without it); it
// reports false if ctx ended first.
func (m *Manager) openWAL(ctx context.Context) bool {
	var reg prometheus.Registerer
	if m.cfg.Registerer != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"log": "raft-wal"}, m.cfg.Registerer)
	}
	for {
		w, err := raftwal.OpenWAL(raftwal.Config{
			Dir:          filepath.Join(m.cfg.DataDir, walDirName),
			Root:         m.cfg.DataDir,
			SegmentBytes: m.cfg.Partition.Store.MaxSegmentBytes,
			Logger:       m.logger.With("component", "raft-wal"),
			Registerer:   reg,
		})
		if err == nil {
			m.wal = w
			return true
		}
		m.logger.Error("topics: cannot open the partitions' shared Raft log; no partition starts on this node until it opens", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retryEvery):
		}
	}
}

// reconcile starts the partitions v places here that are not running,
// applies changed settings to those that are, and stops and removes
// those v no longer places here.
func (m *Manager) reconcile(v *catalog.View) {
	want := map[string]catalog.PartitionRef{}
	for _, ref := range v.Hosted(m.cfg.NodeID) {
		if ref.Topic.Partitions[ref.Partition].System {
			continue
		}
		want[ref.Group()] = ref
	}
	var addrs map[string]string
	for g, ref := range want {
		m.mu.Lock()
		p, ok := m.running[g]
		m.mu.Unlock()
		if ok {
			m.applySettings(p, ref)
			continue
		}
		if addrs == nil {
			addrs = m.addrs()
		}
		if err := m.start(ref, addrs); err != nil {
			m.logger.Warn("topics: cannot start a partition; retrying", "topic", ref.Topic.Name, "partition", ref.Partition, "err", err)
		}
	}
	m.mu.Lock()
	var gone []*partition
	for g, p := range m.running {
		if _, ok := want[g]; !ok && m.retired(p, v) {
			gone = append(gone, p)
			delete(m.running, g)
		}
	}
	m.mu.Unlock()
	for _, p := range gone {
		// The catalogue only moves forward: a partition it no longer
		// places here was deleted (or moved away) for good.
		m.stop(p)
		if err := os.RemoveAll(p.dir); err != nil {
			m.logger.Error("topics: removing a deleted partition's files", "dir", p.dir, "err", err)
			continue
		}
		m.logger.Info("topics: removed a partition this node no longer hosts", "topic", p.ref.Topic.Name, "partition", p.ref.Partition, "dir", p.dir)
	}
	m.sweep(v)
}

// retireAfter bounds how long a replica moved away from this node keeps
// running while its group may still count on it (see retired).
const retireAfter = 30 * time.Second

// retired reports whether a running partition that v no longer places
// here may stop: at once if its topic is gone; if it was moved away, once
// its group's configuration no longer lists this node (the leader removes
// it only after the new replica is a voter, so stopping earlier would take
// a voter from the group), or retireAfter after it was moved away (a
// removed follower may never hear of its removal). Caller holds mu.
func (m *Manager) retired(p *partition, v *catalog.View) bool {
	if deleted(v, p.ref.Topic.ID) {
		return true
	}
	if t, err := v.Topic(p.ref.Topic.Name); err == nil && t.ID == p.ref.Topic.ID {
		// The latest replicas: while it still leads the group, this node
		// hands its place over (conform) by them.
		p.ref.Topic = t
	}
	if p.movedAway.IsZero() {
		p.movedAway = time.Now()
		m.logger.Info("topics: this node's replica was moved away; it serves until its group lets it go", "topic", p.ref.Topic.Name, "partition", p.ref.Partition)
	}
	if time.Since(p.movedAway) > retireAfter {
		return true
	}
	members, err := p.log.Members()
	return err == nil && !slices.ContainsFunc(members, func(mb cluster.Member) bool { return mb.ID == m.cfg.NodeID })
}

// sweep removes the directories of partitions whose topic was deleted
// while this node was down: a restarted node's catalogue may replay the
// creation and the deletion before any reconcile sees the topic.
func (m *Manager) sweep(v *catalog.View) {
	entries, err := os.ReadDir(m.cfg.DataDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.logger.Warn("topics: listing partition directories", "err", err)
		}
		return
	}
	for _, e := range entries {
		var id uint64
		var p int
		if _, err := fmt.Sscanf(e.Name(), "t%d.p%d", &id, &p); err != nil || !e.IsDir() || m.lookup(e.Name()) != nil {
			continue
		}
		if !deleted(v, id) {
			continue
		}
		dir := filepath.Join(m.cfg.DataDir, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			m.logger.Error("topics: removing a deleted topic's partition", "dir", dir, "err", err)
			continue
		}
		m.logger.Info("topics: removed the files of a topic deleted while this node was away", "dir", dir)
	}
}

// deleted reports whether v shows the topic created at index id deleted:
// v has applied that index, and no topic has the ID. (A topic's ID is the
// index of its creation, never reused; a directory t<id>.* exists only if
// this node applied that creation.) A v that has not reached id yet
// proves nothing.
func deleted(v *catalog.View, id uint64) bool {
	if id == 0 || id > v.Index() {
		return false
	}
	for _, t := range v.Topics() {
		if t.ID == id {
			return false
		}
	}
	return true
}

// addrs maps the system group's members to their RPC (and Raft) addresses.
func (m *Manager) addrs() map[string]string {
	out := map[string]string{}
	servers, err := m.cfg.System.Servers()
	if err != nil {
		m.logger.Warn("topics: the system group's members", "err", err)
		return out
	}
	for _, s := range servers {
		out[s.ID] = s.RPCAddr
	}
	return out
}

// start opens the partition's Raft group. Every replica bootstraps it
// with the same voters, the catalogue's replicas.
func (m *Manager) start(ref catalog.PartitionRef, addrs map[string]string) error {
	part := ref.Topic.Partitions[ref.Partition]
	// Only the partition's initial replicas bootstrap its group, all with
	// the same configuration; a replica a move added joins the running
	// group when its leader adds it.
	var voters map[string]string
	if slices.Contains(part.Initial, m.cfg.NodeID) {
		voters = make(map[string]string, len(part.Initial))
		for _, id := range part.Initial {
			addr, ok := addrs[id]
			if !ok {
				return fmt.Errorf("replica %s is not a member of the system group", id)
			}
			voters[id] = addr
		}
	}
	replicas := part.Replicas
	group := ref.Group()
	cfg := m.cfg.Partition
	cfg.NodeID = m.cfg.NodeID
	cfg.DataDir = filepath.Join(m.cfg.DataDir, group)
	cfg.Group = group
	cfg.Voters = voters
	cfg.Bootstrap = voters != nil // ignored once the group has state
	cfg.Alone = len(voters) == 1
	cfg.Meta = nil
	cfg.SharedLog, cfg.OwnRaftLog = m.wal, m.cfg.OwnRaftLogs
	cfg.Store = storeConfig(cfg.Store, ref.Topic.Config)
	cfg.Logger = m.logger.With("topic", ref.Topic.Name, "partition", ref.Partition)
	if cfg.TracerProvider != nil {
		cfg.SpanAttributes = []attribute.KeyValue{attribute.String("proglog.topic", ref.Topic.Name), attribute.Int("proglog.partition", ref.Partition)}
	}
	if fetch := m.cfg.FetchRecord; fetch != nil {
		name, p := ref.Topic.Name, ref.Partition
		cfg.FetchRecord = func(ctx context.Context, addr string, offset uint64) (logstore.Record, error) {
			return fetch(ctx, addr, name, p, offset)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	l, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		l.Close()
		return errors.New("topics: closed")
	}
	m.running[group] = &partition{ref: ref, log: l, dir: cfg.DataDir, retention: ref.Topic.Config, nextBalance: time.Now().Add(balanceAfter)}
	close(m.started)
	m.started = make(chan struct{})
	m.mu.Unlock()
	m.logger.Info("topics: started a partition", "topic", ref.Topic.Name, "partition", ref.Partition, "group", group, "replicas", replicas)
	return nil
}

// storeConfig is the node's store settings with the topic's retention and
// record size limit.
func storeConfig(node logstore.Config, t catalog.Config) logstore.Config {
	node.RetentionBytes = int64(t.RetentionBytes)
	node.RetentionAge = t.RetentionAge
	if t.MaxRecordBytes > 0 && (node.MaxRecordBytes == 0 || int(t.MaxRecordBytes) < node.MaxRecordBytes) {
		node.MaxRecordBytes = int(t.MaxRecordBytes)
	}
	return node
}

// applySettings brings a running partition's retention in line with its
// topic's settings.
func (m *Manager) applySettings(p *partition, ref catalog.PartitionRef) {
	m.mu.Lock()
	p.ref = ref
	cur := p.retention
	m.mu.Unlock()
	want := ref.Topic.Config
	if cur.RetentionBytes == want.RetentionBytes && cur.RetentionAge == want.RetentionAge {
		return
	}
	if err := p.log.SetRetention(int64(want.RetentionBytes), want.RetentionAge); err != nil {
		m.logger.Warn("topics: applying a topic's retention; retrying", "topic", ref.Topic.Name, "partition", ref.Partition, "err", err)
		return
	}
	m.mu.Lock()
	p.retention = want
	m.mu.Unlock()
}

// Leadership balance: raft elects whichever replica times out first, so
// without help leaders pile up on the nodes that started first. Each
// partition's preferred leader is its first replica (Place spreads those
// evenly); a node that leads a partition it is not preferred for hands the
// leadership to the preferred one, which also brings leaders back to a
// node that returns after a restart.
const (
	balanceEvery = 2 * time.Second
	// balanceAfter lets a partition's first election settle before its
	// leadership moves.
	balanceAfter = 3 * time.Second
	// balanceBackoff spaces attempts at a preferred leader that did not
	// take over (down, or behind): each attempt pauses the partition's
	// appends for up to an election timeout.
	balanceBackoff = 30 * time.Second
)

func (m *Manager) balanceLoop(ctx context.Context) {
	t := time.NewTicker(balanceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.balance(ctx)
	}
}

// balance brings the groups this node leads in line with the catalogue:
// their membership (conform), then their leadership, handed to each
// partition's preferred leader, one partition at a time.
func (m *Manager) balance(ctx context.Context) {
	m.mu.Lock()
	ps := make([]*partition, 0, len(m.running))
	for _, p := range m.running {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	var addrs map[string]string
	for _, p := range ps {
		if ctx.Err() != nil {
			return
		}
		if !p.log.IsLeader() {
			continue
		}
		m.mu.Lock()
		ref, due := p.ref, time.Now().After(p.nextBalance)
		m.mu.Unlock()
		if addrs == nil {
			addrs = m.addrs()
		}
		members, changed := m.conform(p, ref, addrs)
		if changed || !due {
			continue
		}
		replicas := ref.Topic.Partitions[ref.Partition].Replicas
		preferred := replicas[0]
		if preferred == m.cfg.NodeID || !slices.ContainsFunc(members, func(mb cluster.Member) bool { return mb.ID == preferred && mb.Voter }) {
			continue
		}
		err := p.log.TransferLeadershipTo(preferred)
		m.mu.Lock()
		p.nextBalance = time.Now().Add(balanceEvery)
		if err != nil {
			p.nextBalance = time.Now().Add(balanceBackoff)
		}
		m.mu.Unlock()
		if err != nil {
			m.logger.Info("topics: the preferred leader did not take over; trying again later", "topic", ref.Topic.Name, "partition", ref.Partition, "preferred", preferred, "err", err)
			continue
		}
		m.logger.Debug("topics: handed leadership to the preferred leader", "topic", ref.Topic.Name, "partition", ref.Partition, "to", preferred)
	}
}

// conform changes the Raft configuration of a partition this node leads
// toward the catalogue's replicas, one step a call, and reports the
// configuration and whether it changed it. While a move is under way the
// catalogue lists more replicas than the replication factor: a new one
// joins as a learner, so catching it up never stalls commits. Once the
// catalogue is back to the replication factor, its replicas are made
// voters, and only then are the servers it no longer lists removed, so a
// quorum of the intended replicas always stands.
func (m *Manager) conform(p *partition, ref catalog.PartitionRef, addrs map[string]string) ([]cluster.Member, bool) {
	part := ref.Topic.Partitions[ref.Partition]
	moving := len(part.Replicas) > ref.Topic.ReplicationFactor
	members, err := p.log.Members()
	if err != nil {
		return nil, false
	}
	in := map[string]cluster.Member{}
	for _, mb := range members {
		in[mb.ID] = mb
	}
	step := func(what string, err error, id string) ([]cluster.Member, bool) {
		if err != nil {
			m.logger.Warn("topics: changing a partition's replicas; retrying", "topic", ref.Topic.Name, "partition", ref.Partition, "step", what, "node", id, "err", err)
		} else {
			m.logger.Info("topics: changed a partition's replicas", "topic", ref.Topic.Name, "partition", ref.Partition, "step", what, "node", id)
		}
		return members, true
	}
	allVoters := true
	for _, id := range part.Replicas {
		mb, ok := in[id]
		addr, known := addrs[id]
		switch {
		case ok && mb.Voter:
			continue
		case !known:
			allVoters = false
			continue
		case !ok && moving:
			return step("add learner", p.log.AddLearner(id, addr), id)
		case !moving:
			return step("make voter", p.log.Promote(id, addr), id)
		}
		allVoters = false
	}
	if !allVoters {
		return members, false
	}
	for _, mb := range members {
		if !slices.Contains(part.Replicas, mb.ID) {
			if mb.ID == m.cfg.NodeID {
				// A leader that removed itself would leave the group without
				// one for a follower's election timeout: it hands leadership
				// to a replica that stays, which then removes it.
				return step("hand leadership over before leaving", p.log.TransferLeadershipTo(part.Replicas[0]), part.Replicas[0])
			}
			return step("remove", p.log.Leave(mb.ID), mb.ID)
		}
	}
	return members, false
}

func (m *Manager) stop(p *partition) {
	if err := p.log.Close(); err != nil {
		m.logger.Error("topics: closing a partition", "topic", p.ref.Topic.Name, "partition", p.ref.Partition, "err", err)
	}
}

// closeAll hands over the leadership of the partitions this node leads,
// so their writes pause for a heartbeat rather than an election, then
// closes every partition.
func (m *Manager) closeAll() {
	m.mu.Lock()
	m.closed = true
	ps := make([]*partition, 0, len(m.running))
	for _, p := range m.running {
		ps = append(ps, p)
	}
	m.running = map[string]*partition{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			if p.log.IsLeader() {
				if err := p.log.TransferLeadership(); err != nil {
					m.logger.Debug("topics: handing a partition's leadership over", "topic", p.ref.Topic.Name, "partition", p.ref.Partition, "err", err)
				}
			}
			m.stop(p)
		})
	}
	wg.Wait()
}

// lookup returns the running partition of group, or nil.
func (m *Manager) lookup(group string) *partition {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running[group]
}

func topicName(name string) string {
	if name == "" {
		return catalog.DefaultTopic
	}
	return name
}

// partition returns the topic and its partition p, or ErrTopicNotFound or
// ErrPartitionNotFound.
func (m *Manager) partition(topic string, p int) (*catalog.Topic, catalog.Partition, error) {
	t, err := m.Topic(topic)
	if err != nil {
		return nil, catalog.Partition{}, err
	}
	if p < 0 || p >= len(t.Partitions) {
		return nil, catalog.Partition{}, fmt.Errorf("%w: topic %q has %d partitions, no partition %d", catalog.ErrPartitionNotFound, t.Name, len(t.Partitions), p)
	}
	return t, t.Partitions[p], nil
}

// Topic implements service.Topics.
func (m *Manager) Topic(name string) (*catalog.Topic, error) {
	return m.cfg.Catalog.View().Topic(topicName(name))
}

// List implements service.Topics.
func (m *Manager) List() []*catalog.Topic { return m.cfg.Catalog.View().Topics() }

// Partition implements service.Topics: the system group for the default
// topic's partition 0, a running group for a partition hosted here,
// *service.NotHostedError for one hosted elsewhere, and a
// *cluster.NotLeaderError without a leader (Unavailable: try again) for
// one hosted here that has not started yet.
func (m *Manager) Partition(topic string, p int) (service.Log, error) {
	t, part, err := m.partition(topic, p)
	if err != nil {
		return nil, err
	}
	if part.System {
		return m.cfg.System, nil
	}
	if !slices.Contains(part.Replicas, m.cfg.NodeID) {
		addrs := m.addrs()
		nh := &service.NotHostedError{Topic: t.Name, Partition: p}
		for _, id := range part.Replicas {
			if a, ok := addrs[id]; ok {
				nh.Addrs = append(nh.Addrs, a)
			}
		}
		return nil, nh
	}
	if r := m.lookup(t.Group(p)); r != nil {
		return r.log, nil
	}
	return nil, &cluster.NotLeaderError{}
}

// nodes lists the system group's members, the nodes a topic may be
// placed on.
func (m *Manager) nodes() ([]string, error) {
	servers, err := m.cfg.System.Servers()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = s.ID
	}
	slices.Sort(ids)
	return ids, nil
}

// live splits nodes into those Alive reports alive (all of them without
// Alive, or before it knows) and the others. This node counts as alive.
func (m *Manager) live(nodes []string) (live, down []string) {
	var alive map[string]bool
	if m.cfg.Alive != nil {
		alive = m.cfg.Alive()
	}
	if alive == nil {
		return nodes, nil
	}
	for _, id := range nodes {
		if alive[id] || id == m.cfg.NodeID {
			live = append(live, id)
		} else {
			down = append(down, id)
		}
	}
	return live, down
}

// Create implements service.Topics: it places the partitions (on the
// system group's leader, whose view is the latest) and commits the topic,
// then waits, for at most StartWait, until the partitions hosted here
// have leaders, so that a produce right after it finds them.
func (m *Manager) Create(ctx context.Context, spec service.TopicSpec) (*catalog.Topic, error) {
	if err := catalog.ValidName(spec.Name); err != nil {
		return nil, err
	}
	if !m.cfg.System.IsLeader() {
		// Only the leader's placement counts; let the service forward.
		if err := m.cfg.System.WaitForLeader(ctx); err != nil {
			return nil, err
		}
		if !m.cfg.System.IsLeader() {
			id, addr := m.cfg.System.Leader()
			return nil, &cluster.NotLeaderError{LeaderID: id, LeaderAddr: addr}
		}
	}
	nodes, err := m.nodes()
	if err != nil {
		return nil, err
	}
	n, rf := spec.Partitions, spec.ReplicationFactor
	if n == 0 {
		n = 1
	}
	if rf == 0 {
		rf = catalog.DefaultReplicationFactor(len(nodes))
	}
	live, down := m.live(nodes)
	if rf > len(nodes) || rf <= len(live) {
		down = nil // Place says what is wrong, or all is well
	}
	if len(down) > 0 {
		return nil, fmt.Errorf("%w: replication factor %d, but only %d of the %d nodes are alive (down: %s); bring them back, or remove them (nodes remove) and add others",
			catalog.ErrNotEnoughNodes, rf, len(live), len(nodes), strings.Join(down, ", "))
	}
	replicas, err := catalog.Place(live, m.cfg.Catalog.View().Load(), n, rf)
	if err != nil {
		return nil, err
	}
	cfg := spec.Config
	if cfg.RetentionBytes == 0 && cfg.RetentionAge == 0 {
		// The node's defaults (serve's --retention-*), fixed into the
		// topic so that every node keeps the same.
		cfg.RetentionBytes = uint64(max(m.cfg.Partition.Store.RetentionBytes, 0))
		cfg.RetentionAge = m.cfg.Partition.Store.RetentionAge
	}
	res, err := m.propose(ctx, catalog.EncodeCreate(catalog.CreateTopic{
		Name: spec.Name, ReplicationFactor: rf, Config: cfg, Replicas: replicas,
	}))
	if err != nil {
		return nil, err
	}
	m.awaitStarted(ctx, res)
	return res, nil
}

// propose commits a catalogue command and returns the topic it produced.
func (m *Manager) propose(ctx context.Context, cmd []byte) (*catalog.Topic, error) {
	resp, err := m.cfg.System.ProposeMeta(ctx, cmd)
	if err != nil {
		return nil, err
	}
	res, ok := resp.(catalog.Result)
	if !ok {
		return nil, fmt.Errorf("topics: unexpected catalogue result %T", resp)
	}
	return res.Topic, res.Err
}

// awaitStarted waits until every partition of t hosted here runs and has
// a leader, or StartWait passes.
func (m *Manager) awaitStarted(ctx context.Context, t *catalog.Topic) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StartWait)
	defer cancel()
	for p, part := range t.Partitions {
		if !slices.Contains(part.Replicas, m.cfg.NodeID) {
			continue
		}
		for {
			m.mu.Lock()
			r, started := m.running[t.Group(p)], m.started
			m.mu.Unlock()
			if r != nil {
				if err := r.log.WaitForLeader(ctx); err != nil {
					return
				}
				break
			}
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Update implements service.Topics. The default topic's settings are each
// node's own (serve's --retention-* and --max-record-bytes): it is the
// system group, whose store the node configures.
func (m *Manager) Update(ctx context.Context, name string, u service.TopicUpdate) (*catalog.Topic, error) {
	if topicName(name) == catalog.DefaultTopic {
		return nil, fmt.Errorf("%w: the topic %q keeps each node's --retention-bytes, --retention-age and --max-record-bytes; change those", catalog.ErrProtected, catalog.DefaultTopic)
	}
	return m.propose(ctx, catalog.EncodeUpdate(catalog.UpdateTopic{
		Name: topicName(name), RetentionBytes: u.RetentionBytes, RetentionAge: u.RetentionAge, MaxRecordBytes: u.MaxRecordBytes,
	}))
}

// Delete implements service.Topics. Every node stops the topic's
// partitions and removes their files as it applies the deletion (or, if
// it is down, when it starts again).
func (m *Manager) Delete(ctx context.Context, name string) error {
	_, err := m.propose(ctx, catalog.EncodeDelete(topicName(name)))
	return err
}

// PeerReplica is what a node says of its replica of a partition.
type PeerReplica struct {
	// NodeID is the node that answered: not the one asked if that one
	// does not host the partition (yet, or any more) and passed the
	// question on to one that does.
	NodeID string
	Next   uint64
	// Voters are the voters of the partition's Raft group as the replica
	// knows its configuration, sorted.
	Voters []string
}

// Move implements service.Topics: it moves partition p's replica from
// node from to node to, without losing a record and without a moment
// with fewer than the replication factor's replicas in the group:
//
//  1. the catalogue lists to beside the others (more replicas than the
//     replication factor: a move), and the partition's leader adds it as
//     a learner, which catches up by snapshot and log;
//  2. Move waits until to's replica reaches the next offset the others had
//     when it began;
//  3. the catalogue lists to in from's place: the leader makes to a voter,
//     then removes from, which stops the partition and removes its files;
//  4. Move waits until a majority of the new replicas have the Raft
//     configuration without from (it is committed): from's node may be
//     stopped from then on. Stopped before, it could take the group's
//     quorum with it (a replication factor of 1: a group of to and from).
//
// from may be down for good: its replica is replaced from the others. A
// Move interrupted after step 1 leaves the move under way: run it again
// (it resumes) to finish it. Run again while from is still in the group
// after step 3, it only waits (step 4).
func (m *Manager) Move(ctx context.Context, topic string, p int, from, to string) (*catalog.Topic, error) {
	if m.cfg.PeerReplica == nil {
		return nil, errors.New("topics: this node cannot follow a replica's progress (no PeerReplica)")
	}
	if !m.cfg.System.IsLeader() {
		id, addr := m.cfg.System.Leader()
		return nil, &cluster.NotLeaderError{LeaderID: id, LeaderAddr: addr}
	}
	t, part, err := m.partition(topic, p)
	if err != nil {
		return nil, err
	}
	addrs := m.addrs()
	switch {
	case part.System:
		return nil, fmt.Errorf("%w: partition 0 of %q is the system group, on every node", catalog.ErrInvalid, t.Name)
	case from == to:
		return nil, fmt.Errorf("%w: moving a replica from %s to itself", catalog.ErrInvalid, from)
	case !slices.Contains(part.Replicas, from) && slices.Contains(part.Replicas, to) && m.stillVoter(ctx, t, p, from, to):
		// Moved in the catalogue (step 3 done), from not out of the group
		// yet: wait for it to leave.
		return t, m.waitVoters(ctx, t, p, from, part.Replicas)
	case !slices.Contains(part.Replicas, from):
		return nil, fmt.Errorf("%w: %s holds no replica of %s/%d (replicas %v)", catalog.ErrInvalid, from, t.Name, p, part.Replicas)
	case addrs[to] == "":
		return nil, fmt.Errorf("%w: %s is not a member of the cluster", catalog.ErrInvalid, to)
	}
	moving := len(part.Replicas) > t.ReplicationFactor
	if slices.Contains(part.Replicas, to) && !moving {
		return nil, fmt.Errorf("%w: %s already holds a replica of %s/%d", catalog.ErrInvalid, to, t.Name, p)
	}
	if moving && !slices.Contains(part.Replicas, to) {
		return nil, fmt.Errorf("%w: a move of %s/%d is under way (replicas %v): finish it first", catalog.ErrInvalid, t.Name, p, part.Replicas)
	}
	// Where the others are: the mark to must reach.
	var mark uint64
	for _, id := range part.Replicas {
		if id == from || id == to {
			continue
		}
		if st, err := m.replica(ctx, id, t.Name, p); err == nil {
			mark = max(mark, st.Next)
		}
	}
	if !moving {
		if t, err = m.propose(ctx, catalog.EncodeSetReplicas(catalog.SetReplicas{
			Name: t.Name, Partition: p, TopicID: t.ID, Replicas: append(slices.Clone(part.Replicas), to),
		})); err != nil {
			return nil, err
		}
		m.logger.Info("topics: moving a replica: the new one catches up", "topic", t.Name, "partition", p, "from", from, "to", to, "mark", mark)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := m.replica(ctx, to, t.Name, p)
		if err == nil && st.Next >= mark {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topics: %s's replica of %s/%d has not caught up (at %d, mark %d; the move stays under way, run it again to finish it): %w", to, t.Name, p, st.Next, mark, ctx.Err())
		case <-tick.C:
		}
	}
	final := slices.Clone(part.Replicas)
	final = slices.DeleteFunc(final, func(id string) bool { return id == to })
	final[slices.Index(final, from)] = to
	t, err = m.propose(ctx, catalog.EncodeSetReplicas(catalog.SetReplicas{Name: t.Name, Partition: p, TopicID: t.ID, Replicas: final}))
	if err != nil {
		return nil, err
	}
	return t, m.waitVoters(ctx, t, p, from, final)
}

// waitVoters waits until a majority of replicas (the partition's new
// replicas) each have the Raft configuration whose voters are exactly
// replicas. A configuration on a majority of its own voters is committed,
// whoever leads, so from is out of the group for good: stopping its node
// can no longer cost the group its quorum.
func (m *Manager) waitVoters(ctx context.Context, t *catalog.Topic, p int, from string, replicas []string) error {
	want := slices.Sorted(slices.Values(replicas))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		agree := 0
		for _, id := range replicas {
			if st, err := m.replica(ctx, id, t.Name, p); err == nil && slices.Equal(st.Voters, want) {
				agree++
			}
		}
		if agree > len(replicas)/2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics: %s/%d is on %v now, but its Raft group has not dropped %s yet (%d of %d new replicas have that configuration): keep %s running until it has, and run the move again to wait for it: %w",
				t.Name, p, replicas, from, agree, len(replicas), from, ctx.Err())
		case <-tick.C:
		}
	}
}

// stillVoter reports whether to's replica of t/p still counts from among
// its group's voters: a move from from to to that is finishing.
func (m *Manager) stillVoter(ctx context.Context, t *catalog.Topic, p int, from, to string) bool {
	st, err := m.replica(ctx, to, t.Name, p)
	return err == nil && slices.Contains(st.Voters, from)
}

// replica is what node id says of its replica of topic/p: this node's own
// from its group, others' by asking them. An answer from another node (the
// one asked does not host the partition) is an error.
func (m *Manager) replica(ctx context.Context, id, topic string, p int) (PeerReplica, error) {
	if id == m.cfg.NodeID {
		t, err := m.Topic(topic)
		if err != nil {
			return PeerReplica{}, err
		}
		r := m.lookup(t.Group(p))
		if r == nil {
			return PeerReplica{}, errors.New("topics: not started here yet")
		}
		_, next := r.log.Bounds()
		members, err := r.log.Members()
		if err != nil {
			return PeerReplica{}, err
		}
		return PeerReplica{NodeID: id, Next: next, Voters: cluster.VoterIDs(members)}, nil
	}
	addr := m.addrs()[id]
	if addr == "" {
		return PeerReplica{}, fmt.Errorf("topics: no address for %s", id)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := m.cfg.PeerReplica(cctx, addr, topic, p)
	if err == nil && st.NodeID != id {
		err = fmt.Errorf("topics: %s does not host %s/%d (%s answered)", id, topic, p, st.NodeID)
	}
	return st, err
}

// Describe implements service.Topics: what this node knows of each
// partition. A partition hosted here reports its group's leader, voters
// and offsets; one hosted elsewhere only its replicas.
func (m *Manager) Describe(_ context.Context, name string) ([]service.PartitionState, error) {
	t, err := m.Topic(name)
	if err != nil {
		return nil, err
	}
	addrs := m.addrs()
	out := make([]service.PartitionState, len(t.Partitions))
	for p, part := range t.Partitions {
		st := service.PartitionState{Index: p}
		var l *cluster.Log
		if part.System {
			l = m.cfg.System
		} else if r := m.lookup(t.Group(p)); r != nil {
			l = r.log
		}
		if l == nil {
			for _, id := range part.Replicas {
				st.Replicas = append(st.Replicas, service.ReplicaState{NodeID: id, RPCAddr: addrs[id]})
			}
			out[p] = st
			continue
		}
		st.Leader, _ = l.Leader()
		members, _ := l.Members()
		ids := part.Replicas
		if part.System {
			ids = nil
			for _, m := range members {
				ids = append(ids, m.ID)
			}
			slices.Sort(ids)
		}
		st.Replicas = replicaStates(ids, members, st.Leader, addrs)
		stats := l.Stats()
		st.Lowest, st.Next, st.SizeBytes = stats.Lowest, stats.Next, uint64(stats.SizeBytes)
		out[p] = st
	}
	return out, nil
}

// replicaStates describes the replicas ids of a group whose Raft
// configuration is members and whose leader is leader ("" for none). Only
// a voter is in sync: it counts toward the quorum that commits, where a
// learner still catching up after a move does not.
func replicaStates(ids []string, members []cluster.Member, leader string, addrs map[string]string) []service.ReplicaState {
	voters := cluster.VoterIDs(members)
	out := make([]service.ReplicaState, 0, len(ids))
	for _, id := range ids {
		out = append(out, service.ReplicaState{
			NodeID: id, RPCAddr: addrs[id], IsLeader: id == leader,
			InSync: leader != "" && slices.Contains(voters, id),
		})
	}
	return out
}

// Leaders counts, per node ID, the partitions this node knows to be led
// by it: the system group and the partitions hosted here.
func (m *Manager) Leaders() map[string]int {
	out := map[string]int{}
	if id, _ := m.cfg.System.Leader(); id != "" {
		out[id]++
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.running {
		if id, _ := p.log.Leader(); id != "" {
			out[id]++
		}
	}
	return out
}

// Ready reports whether this node serves every partition the catalogue
// places on it (cluster.Log.Ready for each: running, a leader known and
// heard from, caught up, writable); nil means ready, else the first
// partition that is not and why.
func (m *Manager) Ready() error {
	refs := m.cfg.Catalog.View().Hosted(m.cfg.NodeID)
	m.mu.Lock()
	logs := make([]*cluster.Log, len(refs))
	for i, ref := range refs {
		if p := m.running[ref.Topic.Group(ref.Partition)]; p != nil {
			logs[i] = p.log
		}
	}
	m.mu.Unlock()
	for i, ref := range refs {
		if logs[i] == nil {
			return fmt.Errorf("topics: partition %s/%d is not running here yet", ref.Topic.Name, ref.Partition)
		}
		if err := logs[i].Ready(); err != nil {
			return fmt.Errorf("topics: partition %s/%d: %w", ref.Topic.Name, ref.Partition, err)
		}
	}
	return nil
}
