package topics

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDeleted checks the rule that lets a node remove a partition's files:
// only a catalogue that has applied the topic's creation, and holds no
// topic of that ID, proves the topic deleted.
func TestDeleted(t *testing.T) {
	c := catalog.New()
	at := time.Unix(1, 0)
	c.Apply(5, at, catalog.EncodeCreate(catalog.CreateTopic{Name: "a", ReplicationFactor: 1, Replicas: [][]string{{"n1"}}}))
	c.Apply(7, at, catalog.EncodeCreate(catalog.CreateTopic{Name: "b", ReplicationFactor: 1, Replicas: [][]string{{"n1"}}}))
	c.Apply(9, at, catalog.EncodeDelete("a"))
	v := c.View()
	tests := []struct {
		id   uint64
		want bool
	}{
		{0, false},  // the default topic
		{5, true},   // created, then deleted
		{7, false},  // lives
		{6, true},   // an index that created nothing the catalogue holds: no directory of it can exist
		{10, false}, // past what the catalogue applied: maybe a topic it has not seen yet
	}
	for _, tt := range tests {
		if got := deleted(v, tt.id); got != tt.want {
			t.Errorf("deleted(%d) = %t, want %t", tt.id, got, tt.want)
		}
	}
}

func TestStoreConfig(t *testing.T) {
	node := logstore.Config{MaxRecordBytes: 1 << 20, RetentionBytes: 5, RetentionAge: time.Hour, MaxSegmentBytes: 7}
	tests := []struct {
		name  string
		topic catalog.Config
		want  logstore.Config
	}{
		{"the topic's retention, even none", catalog.Config{}, logstore.Config{MaxRecordBytes: 1 << 20, MaxSegmentBytes: 7}},
		{"a lower record limit", catalog.Config{RetentionBytes: 9, MaxRecordBytes: 10},
			logstore.Config{MaxRecordBytes: 10, RetentionBytes: 9, MaxSegmentBytes: 7}},
		{"never above the node's", catalog.Config{RetentionAge: time.Minute, MaxRecordBytes: 2 << 20},
			logstore.Config{MaxRecordBytes: 1 << 20, RetentionAge: time.Minute, MaxSegmentBytes: 7}},
	}
	for _, tt := range tests {
		got := storeConfig(node, tt.topic)
		if got.MaxRecordBytes != tt.want.MaxRecordBytes || got.RetentionBytes != tt.want.RetentionBytes ||
			got.RetentionAge != tt.want.RetentionAge || got.MaxSegmentBytes != tt.want.MaxSegmentBytes {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestReplicaStates: only a voter of a group with a leader is in sync; a
// learner catching up after a move is listed but not in sync.
func TestReplicaStates(t *testing.T) {
	addrs := map[string]string{"n1": "a1", "n2": "a2", "n3": "a3"}
	moving := []cluster.Member{{ID: "n1", Voter: true}, {ID: "n2", Voter: true}, {ID: "n3"}}
	tests := []struct {
		name    string
		ids     []string
		members []cluster.Member
		leader  string
		want    []service.ReplicaState
	}{
		{"a learner catching up", []string{"n1", "n2", "n3"}, moving, "n1", []service.ReplicaState{
			{NodeID: "n1", RPCAddr: "a1", IsLeader: true, InSync: true},
			{NodeID: "n2", RPCAddr: "a2", InSync: true},
			{NodeID: "n3", RPCAddr: "a3"},
		}},
		{"no leader", []string{"n1", "n2"}, moving, "", []service.ReplicaState{
			{NodeID: "n1", RPCAddr: "a1"},
			{NodeID: "n2", RPCAddr: "a2"},
		}},
		{"a replica not in the group yet", []string{"n2", "n4"}, moving, "n2", []service.ReplicaState{
			{NodeID: "n2", RPCAddr: "a2", IsLeader: true, InSync: true},
			{NodeID: "n4"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replicaStates(tt.ids, tt.members, tt.leader, addrs); !slices.Equal(got, tt.want) {
				t.Errorf("replicaStates = %+v, want %+v", got, tt.want)
			}
		})
	}
}
