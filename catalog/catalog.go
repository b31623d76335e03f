package catalog

import (
	"errors"
	"fmt"
	"time"
)

// DefaultTopic is the topic of every request that names none. It exists
// from the first start: its one partition is the system group itself,
// replicated on every voter (Partition.System), and it cannot be deleted.
const DefaultTopic = "default"

// MaxNameLen is the longest topic name, in bytes (Kafka's limit).
const MaxNameLen = 249

// MaxPartitions caps the partitions of one topic.
const MaxPartitions = 1024

var (
	ErrTopicExists       = errors.New("catalog: topic exists")
	ErrTopicNotFound     = errors.New("catalog: no such topic")
	ErrPartitionNotFound = errors.New("catalog: no such partition")
	// ErrInvalid wraps every refusal of a malformed name, setting or
	// command (a Connect InvalidArgument).
	ErrInvalid = errors.New("catalog: invalid")
	// ErrNotEnoughNodes: the replication factor exceeds the nodes there are
	// (a Connect FailedPrecondition).
	ErrNotEnoughNodes = errors.New("catalog: not enough nodes")
	// ErrProtected: the default topic cannot be deleted (FailedPrecondition).
	ErrProtected = errors.New("catalog: protected topic")
)

// Config holds a topic's settings; zero values take the node's defaults
// (no retention by that measure; the node's maximum record size).
type Config struct {
	RetentionBytes uint64
	RetentionAge   time.Duration
	MaxRecordBytes uint32
}

// Topic is one entry of the catalogue. Values handed out by a View are
// shared: treat them as read-only.
type Topic struct {
	Name string
	// ID is the Raft index of the command that created the topic: unique
	// for ever, so a topic deleted and created again under its name gets
	// new Raft groups and directories. The default topic's is 0.
	ID                uint64
	ReplicationFactor int
	Config            Config
	Created           time.Time
	Partitions        []Partition
}

// Partition is one partition of a topic and the nodes that replicate it.
type Partition struct {
	Index int
	// Replicas are node IDs; the first is the preferred leader. Empty for
	// the default topic's partition 0, whose replicas are the system
	// group's voters (System).
	Replicas []string
	// System: the partition is the system group (the default topic's
	// partition 0).
	System bool
	// Initial are the replicas the partition was created with: its Raft
	// group's bootstrap configuration. Only these nodes may bootstrap the
	// group, with exactly this configuration, even after moves changed
	// Replicas; a node added later joins the running group instead.
	Initial []string
}

// Group is the name of the partition's Raft group on the node's stream
// layer ("t<topic ID>.p<index>"), or "" for the system group.
func (t *Topic) Group(p int) string {
	if t.ID == 0 && p == 0 {
		return ""
	}
	return fmt.Sprintf("t%d.p%d", t.ID, p)
}

// ValidName checks a topic name: 1 to MaxNameLen bytes of [a-zA-Z0-9._-],
// and not "." or "..", which would be directory names.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty topic name", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: topic name of %d bytes, at most %d", ErrInvalid, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: topic name %q", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: topic name %q: byte %d (%q) is not one of [a-zA-Z0-9._-]", ErrInvalid, name, i, c)
		}
	}
	return nil
}
