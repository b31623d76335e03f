package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/proglog/proglog/catalog"
)

// errStandalone refuses topic changes on a node without Raft (a
// FailedPrecondition).
var errStandalone = errors.New("topics need the replicated mode; this node runs one log without Raft")

// standalone is the Topics of a node that serves one log without Raft
// (Config.Topics nil): one topic, "default", of one partition, the log.
type standalone struct {
	log             Log
	nodeID, rpcAddr string
}

var _ Topics = (*standalone)(nil)

var standaloneTopic = &catalog.Topic{
	Name:              catalog.DefaultTopic,
	ReplicationFactor: 1,
	Partitions:        []catalog.Partition{{Index: 0, System: true}},
}

func (t *standalone) Topic(name string) (*catalog.Topic, error) {
	if name != "" && name != catalog.DefaultTopic {
		return nil, fmt.Errorf("%w (this node serves only %q)", catalog.ErrTopicNotFound, catalog.DefaultTopic)
	}
	return standaloneTopic, nil
}

func (t *standalone) List() []*catalog.Topic { return []*catalog.Topic{standaloneTopic} }

func (t *standalone) Partition(name string, partition int) (Log, error) {
	if _, err := t.Topic(name); err != nil {
		return nil, err
	}
	if partition != 0 {
		return nil, catalog.ErrPartitionNotFound
	}
	return t.log, nil
}

func (t *standalone) Create(context.Context, TopicSpec) (*catalog.Topic, error) {
	return nil, errStandalone
}

func (t *standalone) Update(context.Context, string, TopicUpdate) (*catalog.Topic, error) {
	return nil, errStandalone
}

func (t *standalone) Delete(context.Context, string) error { return errStandalone }

func (t *standalone) Move(context.Context, string, int, string, string) (*catalog.Topic, error) {
	return nil, errStandalone
}

func (t *standalone) Describe(_ context.Context, name string) ([]PartitionState, error) {
	if _, err := t.Topic(name); err != nil {
		return nil, err
	}
	st := t.log.Stats()
	return []PartitionState{{
		Index:     0,
		Leader:    t.nodeID,
		Replicas:  []ReplicaState{{NodeID: t.nodeID, RPCAddr: t.rpcAddr, IsLeader: true, InSync: true}},
		Lowest:    st.Lowest,
		Next:      st.Next,
		SizeBytes: uint64(max(st.SizeBytes, 0)),
	}}, nil
}
