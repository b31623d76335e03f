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
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
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
	// StartWait bounds how long CreateTopic waits for the partitions this
	// node hosts to elect leaders before it answers; default 10s.
	StartWait time.Duration
	Logger    *slog.Logger
}

// Manager is a node's share of the topics; it implements service.Topics.
// Run starts and stops partitions until its context ends, then closes
// them.
type Manager struct {
	cfg    Config
	logger *slog.Logger

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
	defer m.closeAll()
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
		if _, ok := want[g]; !ok {
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
	replicas := ref.Topic.Partitions[ref.Partition].Replicas
	voters := make(map[string]string, len(replicas))
	for _, id := range replicas {
		addr, ok := addrs[id]
		if !ok {
			return fmt.Errorf("replica %s is not a member of the system group", id)
		}
		voters[id] = addr
	}
	group := ref.Group()
	cfg := m.cfg.Partition
	cfg.NodeID = m.cfg.NodeID
	cfg.DataDir = filepath.Join(m.cfg.DataDir, group)
	cfg.Group = group
	cfg.Voters = voters
	cfg.Bootstrap = true // ignored once the group has state
	cfg.Alone = len(voters) == 1
	cfg.Meta = nil
	cfg.Store = storeConfig(cfg.Store, ref.Topic.Config)
	cfg.Logger = m.logger.With("topic", ref.Topic.Name, "partition", ref.Partition)
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
	m.running[group] = &partition{ref: ref, log: l, dir: cfg.DataDir, retention: ref.Topic.Config}
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
	t, err := m.Topic(topic)
	if err != nil {
		return nil, err
	}
	if p < 0 || p >= len(t.Partitions) {
		return nil, fmt.Errorf("%w: topic %q has %d partitions, no partition %d", catalog.ErrPartitionNotFound, t.Name, len(t.Partitions), p)
	}
	part := t.Partitions[p]
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
	replicas, err := catalog.Place(nodes, m.cfg.Catalog.View().Load(), n, rf)
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

// Update implements service.Topics.
func (m *Manager) Update(ctx context.Context, name string, u service.TopicUpdate) (*catalog.Topic, error) {
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
		voters := map[string]bool{}
		if servers, err := l.Servers(); err == nil {
			for _, s := range servers {
				voters[s.ID] = true
			}
		}
		ids := part.Replicas
		if part.System {
			ids = slices.Sorted(maps.Keys(voters))
		}
		for _, id := range ids {
			st.Replicas = append(st.Replicas, service.ReplicaState{
				NodeID: id, RPCAddr: addrs[id], IsLeader: id == st.Leader, InSync: voters[id] && st.Leader != "",
			})
		}
		stats := l.Stats()
		st.Lowest, st.Next, st.SizeBytes = stats.Lowest, stats.Next, uint64(stats.SizeBytes)
		out[p] = st
	}
	return out, nil
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
