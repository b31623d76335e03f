package service

import (
	"context"
	"fmt"
	"time"

	"github.com/proglog/proglog/catalog"
)

// Topics is the node's view of the cluster's topics: the catalogue, and
// the partitions this node hosts. The node implements it over the
// catalogue and its partitions' Raft groups; errors are catalog's
// (ErrTopicNotFound, ErrTopicExists, ErrInvalid, ...), cluster's
// (*cluster.NotLeaderError for a change only the system group's leader
// can make, forwarded like an append) or *NotHostedError.
type Topics interface {
	// Topic returns the topic ("" is catalog.DefaultTopic) as this node's
	// catalogue holds it.
	Topic(name string) (*catalog.Topic, error)
	// List returns every topic, by name.
	List() []*catalog.Topic
	// Partition returns the log of a partition this node hosts, or
	// *NotHostedError naming the nodes that do.
	Partition(topic string, partition int) (Log, error)
	// Create, Update and Delete change the catalogue and return once the
	// change is committed and applied on this node.
	Create(ctx context.Context, spec TopicSpec) (*catalog.Topic, error)
	Update(ctx context.Context, name string, update TopicUpdate) (*catalog.Topic, error)
	Delete(ctx context.Context, name string) error
	// Move moves partition's replica from node from to node to (IDs), and
	// returns the topic once the catalogue names to in from's place.
	Move(ctx context.Context, topic string, partition int, from, to string) (*catalog.Topic, error)
	// Describe reports each partition's leader, replicas and offsets.
	Describe(ctx context.Context, name string) ([]PartitionState, error)
}

// TopicSpec is a CreateTopic request; zero fields take defaults
// (Partitions 1, ReplicationFactor min(3, nodes)).
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Config            catalog.Config
}

// TopicUpdate sets the settings whose pointers are not nil.
type TopicUpdate struct {
	RetentionBytes *uint64
	RetentionAge   *time.Duration
	MaxRecordBytes *uint32
}

// PartitionState is one partition as DescribeTopic reports it.
type PartitionState struct {
	Index        int
	Leader       string // node ID; "" while there is none
	Replicas     []ReplicaState
	Lowest, Next uint64
	SizeBytes    uint64
}

// ReplicaState is one replica of a partition.
type ReplicaState struct {
	NodeID, RPCAddr string
	IsLeader        bool
	InSync          bool
}

// NotHostedError says the partition lives on other nodes: the service
// forwards a produce to Leader (or any of Addrs while the leader is
// unknown) and a consume to one of Addrs.
type NotHostedError struct {
	Topic     string
	Partition int
	Leader    string   // RPC address of the partition's leader, if known
	Addrs     []string // RPC addresses of the nodes that host it
}

func (e *NotHostedError) Error() string {
	return fmt.Sprintf("partition %d of topic %q is not hosted on this node (replicas at %v)", e.Partition, e.Topic, e.Addrs)
}
