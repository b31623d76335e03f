package service_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// testTopics stands in for the node's Topics: a catalogue in a map, each
// hosted partition a real logstore.Log on disk, and partitions marked as
// hosted elsewhere answering *service.NotHostedError.
type testTopics struct {
	t     testing.TB
	dir   string
	nodes int // replication factors above it fail with ErrNotEnoughNodes

	mu     sync.Mutex
	topics map[string]*catalog.Topic
	logs   map[string][]service.Log // nil where not hosted
	remote map[string]*service.NotHostedError
	// changeErr, when set, fails Create, Update and Delete (a follower's
	// *cluster.NotLeaderError).
	changeErr error
}

// newTestTopics makes a catalogue holding the default topic; its one
// partition is the env's own log, attached by defaultLog.
func newTestTopics(t testing.TB) *testTopics {
	tt := &testTopics{
		t: t, dir: t.TempDir(), nodes: 3,
		topics: map[string]*catalog.Topic{},
		logs:   map[string][]service.Log{},
		remote: map[string]*service.NotHostedError{},
	}
	return tt
}

// withDefault makes log the default topic's partition 0; for
// envOptions.config.
func (tt *testTopics) withDefault(c *service.Config) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.topics[catalog.DefaultTopic] = &catalog.Topic{Name: catalog.DefaultTopic, ReplicationFactor: 1,
		Partitions: []catalog.Partition{{Index: 0, System: true}}}
	tt.logs[catalog.DefaultTopic] = []service.Log{c.Log}
	c.Topics = tt
}

func key(topic string, p int) string { return fmt.Sprintf("%s/%d", topic, p) }

// add creates a topic of n partitions with cfg; remote maps the partitions
// other nodes host to their error.
func (tt *testTopics) add(name string, n int, cfg catalog.Config, remote map[int]*service.NotHostedError) *catalog.Topic {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.addLocked(name, n, 1, cfg, remote)
}

func (tt *testTopics) addLocked(name string, n, rf int, cfg catalog.Config, remote map[int]*service.NotHostedError) *catalog.Topic {
	t := &catalog.Topic{Name: name, ID: uint64(len(tt.topics) + 1), ReplicationFactor: rf, Config: cfg}
	logs := make([]service.Log, n)
	for p := range n {
		t.Partitions = append(t.Partitions, catalog.Partition{Index: p, Replicas: []string{"node-1"}})
		if nhe, ok := remote[p]; ok {
			tt.remote[key(name, p)] = nhe
			continue
		}
		l, err := logstore.Open(filepath.Join(tt.dir, fmt.Sprintf("t%d.p%d", t.ID, p)), logstore.DefaultConfig())
		if err != nil {
			tt.t.Fatal(err)
		}
		tt.t.Cleanup(func() {
			if err := l.Close(); err != nil {
				tt.t.Error(err)
			}
		})
		logs[p] = l
	}
	tt.topics[name] = t
	tt.logs[name] = logs
	return t
}

// log returns the log of a hosted partition, for checks.
func (tt *testTopics) log(topic string, p int) *logstore.Log {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.logs[topic][p].(*logstore.Log)
}

func (tt *testTopics) setChangeErr(err error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.changeErr = err
}

func (tt *testTopics) Topic(name string) (*catalog.Topic, error) {
	if name == "" {
		name = catalog.DefaultTopic
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t, ok := tt.topics[name]
	if !ok {
		return nil, catalog.ErrTopicNotFound
	}
	return t, nil
}

func (tt *testTopics) List() []*catalog.Topic {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []*catalog.Topic
	for _, t := range tt.topics {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *catalog.Topic) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out
}

func (tt *testTopics) Partition(name string, p int) (service.Log, error) {
	t, err := tt.Topic(name)
	if err != nil {
		return nil, err
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if p < 0 || p >= len(t.Partitions) {
		return nil, catalog.ErrPartitionNotFound
	}
	if nhe, ok := tt.remote[key(t.Name, p)]; ok {
		return nil, nhe
	}
	return tt.logs[t.Name][p], nil
}

func (tt *testTopics) Create(_ context.Context, spec service.TopicSpec) (*catalog.Topic, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	switch {
	case tt.changeErr != nil:
		return nil, tt.changeErr
	case tt.topics[spec.Name] != nil:
		return nil, catalog.ErrTopicExists
	case spec.ReplicationFactor > tt.nodes:
		return nil, fmt.Errorf("%w: replication factor %d, %d nodes", catalog.ErrNotEnoughNodes, spec.ReplicationFactor, tt.nodes)
	case spec.Partitions < 1 || spec.Partitions > catalog.MaxPartitions:
		return nil, fmt.Errorf("%w: %d partitions", catalog.ErrInvalid, spec.Partitions)
	}
	rf := spec.ReplicationFactor
	if rf == 0 {
		rf = min(3, tt.nodes)
	}
	return tt.addLocked(spec.Name, spec.Partitions, rf, spec.Config, nil), nil
}

func (tt *testTopics) Update(_ context.Context, name string, u service.TopicUpdate) (*catalog.Topic, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.changeErr != nil {
		return nil, tt.changeErr
	}
	old, ok := tt.topics[name]
	if !ok {
		return nil, catalog.ErrTopicNotFound
	}
	t := *old
	if u.RetentionBytes != nil {
		t.Config.RetentionBytes = *u.RetentionBytes
	}
	if u.RetentionAge != nil {
		t.Config.RetentionAge = *u.RetentionAge
	}
	if u.MaxRecordBytes != nil {
		t.Config.MaxRecordBytes = *u.MaxRecordBytes
	}
	tt.topics[name] = &t
	return &t, nil
}

func (tt *testTopics) Delete(_ context.Context, name string) error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	switch {
	case tt.changeErr != nil:
		return tt.changeErr
	case name == catalog.DefaultTopic:
		return catalog.ErrProtected
	case tt.topics[name] == nil:
		return catalog.ErrTopicNotFound
	}
	delete(tt.topics, name) // its logs close with the test
	return nil
}

// Move refuses: a test topic's partitions are single logs with no replicas
// to move (the node package tests moves between real nodes).
func (tt *testTopics) Move(_ context.Context, name string, _ int, _, _ string) (*catalog.Topic, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.changeErr != nil {
		return nil, tt.changeErr
	}
	return nil, fmt.Errorf("%w: no replicas to move in the test topics", catalog.ErrInvalid)
}

func (tt *testTopics) Describe(_ context.Context, name string) ([]service.PartitionState, error) {
	t, err := tt.Topic(name)
	if err != nil {
		return nil, err
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make([]service.PartitionState, len(t.Partitions))
	for p := range t.Partitions {
		st := service.PartitionState{Index: p}
		if nhe, ok := tt.remote[key(name, p)]; ok {
			st.Leader = "elsewhere"
			for _, a := range nhe.Addrs {
				st.Replicas = append(st.Replicas, service.ReplicaState{NodeID: "elsewhere", RPCAddr: a, IsLeader: a == nhe.Leader, InSync: true})
			}
		} else {
			s := tt.logs[name][p].Stats()
			st.Leader, st.Lowest, st.Next, st.SizeBytes = "node-1", s.Lowest, s.Next, uint64(s.SizeBytes)
			st.Replicas = []service.ReplicaState{{NodeID: "node-1", RPCAddr: "here", IsLeader: true, InSync: true}}
		}
		out[p] = st
	}
	return out, nil
}

// setRemote marks a partition as hosted elsewhere.
func (tt *testTopics) setRemote(topic string, p int, nhe *service.NotHostedError) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.remote[key(topic, p)] = nhe
}

// newTopicsEnv is newEnv serving the topics of a testTopics, whose default
// topic is the env's log; setup adds topics before the server starts.
func newTopicsEnv(t *testing.T, opts envOptions, setup func(*testTopics)) (*env, *testTopics) {
	t.Helper()
	tt := newTestTopics(t)
	config := opts.config
	opts.config = func(c *service.Config) {
		tt.withDefault(c)
		if setup != nil {
			setup(tt)
		}
		if config != nil {
			config(c)
		}
	}
	return newEnv(t, opts), tt
}
