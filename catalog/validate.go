package catalog

import "fmt"

// checkReplicas refuses a replica list with an empty or repeated node ID.
func checkReplicas(rs []string) error {
	for i, id := range rs {
		if id == "" {
			return fmt.Errorf("%w: empty node ID in replicas %q", ErrInvalid, rs)
		}
		for _, prev := range rs[:i] {
			if prev == id {
				return fmt.Errorf("%w: node %q twice in replicas %q", ErrInvalid, id, rs)
			}
		}
	}
	return nil
}

func checkConfig(c Config) error {
	if c.RetentionAge < 0 {
		return fmt.Errorf("%w: negative retention age %v", ErrInvalid, c.RetentionAge)
	}
	return nil
}

// checkTopic holds a topic to the invariants Apply keeps, so a restored
// snapshot is one Apply could have built.
func checkTopic(t *Topic, index uint64) error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	if err := checkConfig(t.Config); err != nil {
		return fmt.Errorf("topic %q: %w", t.Name, err)
	}
	if t.Name == DefaultTopic {
		if t.ID != 0 || t.ReplicationFactor != 0 || !t.Created.IsZero() || len(t.Partitions) != 1 ||
			!t.Partitions[0].System || len(t.Partitions[0].Replicas) != 0 || len(t.Partitions[0].Initial) != 0 {
			return fmt.Errorf("%w: default topic is not the system group's", ErrInvalid)
		}
		return nil
	}
	switch {
	case t.ID == 0 || t.ID > index:
		return fmt.Errorf("%w: topic %q: ID %d outside 1..%d", ErrInvalid, t.Name, t.ID, index)
	case t.ReplicationFactor < 1:
		return fmt.Errorf("%w: topic %q: replication factor %d", ErrInvalid, t.Name, t.ReplicationFactor)
	case len(t.Partitions) < 1 || len(t.Partitions) > MaxPartitions:
		return fmt.Errorf("%w: topic %q: %d partitions", ErrInvalid, t.Name, len(t.Partitions))
	}
	for _, p := range t.Partitions {
		if p.System || len(p.Replicas) < t.ReplicationFactor {
			return fmt.Errorf("%w: topic %q: partition %d: %d replicas, system %t", ErrInvalid, t.Name, p.Index, len(p.Replicas), p.System)
		}
		if err := checkReplicas(p.Replicas); err != nil {
			return fmt.Errorf("topic %q: partition %d: %w", t.Name, p.Index, err)
		}
		if len(p.Initial) != t.ReplicationFactor {
			return fmt.Errorf("%w: topic %q: partition %d: %d initial replicas, replication factor %d", ErrInvalid, t.Name, p.Index, len(p.Initial), t.ReplicationFactor)
		}
		if err := checkReplicas(p.Initial); err != nil {
			return fmt.Errorf("topic %q: partition %d: initial: %w", t.Name, p.Index, err)
		}
	}
	return nil
}
