package catalog

import (
	"fmt"
	"slices"
	"time"
)

// Result is what Apply returns to the proposer: the topic as the command
// left it (for a delete, as it was), or the error that refused the
// command, which then changed nothing.
type Result struct {
	Topic *Topic
	Err   error
}

// apply returns the view after the command b committed at index, and its
// result. It reads nothing but its arguments, so every node computes the
// same view from the same commands.
func (v *View) apply(index uint64, at time.Time, b []byte) (*View, Result) {
	c, err := DecodeCommand(b)
	if err != nil {
		return v.with(index, "", nil), Result{Err: err}
	}
	var t *Topic
	switch c := c.(type) {
	case *CreateTopic:
		t, err = v.create(index, at, c)
	case *UpdateTopic:
		t, err = v.update(c)
	case *DeleteTopic:
		t, err = v.delete(c)
		if err == nil {
			return v.with(index, c.Name, nil), Result{Topic: t}
		}
	case *SetReplicas:
		t, err = v.setReplicas(c)
	}
	if err != nil {
		return v.with(index, "", nil), Result{Err: err}
	}
	return v.with(index, t.Name, t), Result{Topic: t}
}

func (v *View) create(index uint64, at time.Time, c *CreateTopic) (*Topic, error) {
	if err := ValidName(c.Name); err != nil {
		return nil, err
	}
	if _, ok := v.topics[c.Name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrTopicExists, c.Name)
	}
	switch n := len(c.Replicas); {
	case index == 0: // ID 0 is the default topic's
		return nil, fmt.Errorf("%w: create at index 0", ErrInvalid)
	case c.ReplicationFactor < 1:
		return nil, fmt.Errorf("%w: replication factor %d", ErrInvalid, c.ReplicationFactor)
	case n < 1 || n > MaxPartitions:
		return nil, fmt.Errorf("%w: %d partitions, want 1 to %d", ErrInvalid, n, MaxPartitions)
	}
	if err := checkConfig(c.Config); err != nil {
		return nil, err
	}
	t := &Topic{
		Name:              c.Name,
		ID:                index,
		ReplicationFactor: c.ReplicationFactor,
		Config:            c.Config,
		// Only the instant: no monotonic reading or location, which
		// differ between nodes and would not survive a snapshot.
		Created:    time.Unix(at.Unix(), int64(at.Nanosecond())).UTC(),
		Partitions: make([]Partition, len(c.Replicas)),
	}
	for i, rs := range c.Replicas {
		if len(rs) != c.ReplicationFactor {
			return nil, fmt.Errorf("%w: partition %d has %d replicas, want %d", ErrInvalid, i, len(rs), c.ReplicationFactor)
		}
		if err := checkReplicas(rs); err != nil {
			return nil, fmt.Errorf("partition %d: %w", i, err)
		}
		t.Partitions[i] = Partition{Index: i, Replicas: slices.Clone(rs), Initial: slices.Clone(rs)}
	}
	return t, nil
}

// update allows the default topic too: its retention is the operator's.
func (v *View) update(u *UpdateTopic) (*Topic, error) {
	old, err := v.Topic(u.Name)
	if err != nil {
		return nil, err
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
	if err := checkConfig(t.Config); err != nil {
		return nil, err
	}
	return &t, nil
}

func (v *View) delete(d *DeleteTopic) (*Topic, error) {
	if d.Name == DefaultTopic {
		return nil, fmt.Errorf("%w: %q", ErrProtected, d.Name)
	}
	return v.Topic(d.Name)
}

func (v *View) setReplicas(s *SetReplicas) (*Topic, error) {
	old, err := v.Topic(s.Name)
	if err != nil {
		return nil, err
	}
	if s.TopicID != 0 && s.TopicID != old.ID {
		return nil, fmt.Errorf("%w: %q has ID %d, not %d", ErrTopicNotFound, s.Name, old.ID, s.TopicID)
	}
	if s.Partition < 0 || s.Partition >= len(old.Partitions) {
		return nil, fmt.Errorf("%w: %q has no partition %d", ErrPartitionNotFound, s.Name, s.Partition)
	}
	switch {
	case old.Partitions[s.Partition].System:
		return nil, fmt.Errorf("%w: the system group's replicas are its voters", ErrInvalid)
	case len(s.Replicas) < old.ReplicationFactor:
		return nil, fmt.Errorf("%w: %d replicas, fewer than the replication factor %d", ErrInvalid, len(s.Replicas), old.ReplicationFactor)
	}
	if err := checkReplicas(s.Replicas); err != nil {
		return nil, err
	}
	t := *old
	t.Partitions = slices.Clone(old.Partitions)
	t.Partitions[s.Partition].Replicas = slices.Clone(s.Replicas)
	return &t, nil
}
