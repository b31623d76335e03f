package catalog

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// View is the catalogue as of one applied command. It never changes: a
// change builds a new View, so a reader may keep one as long as it likes.
// Its Topics are shared with other Views: treat them as read-only.
type View struct {
	index   uint64
	topics  map[string]*Topic
	sorted  []*Topic // topics by name
	changed chan struct{}
}

// PartitionRef names one partition of a topic.
type PartitionRef struct {
	Topic     *Topic
	Partition int
}

// Group is the partition's Raft group name (Topic.Group).
func (r PartitionRef) Group() string { return r.Topic.Group(r.Partition) }

// initialView holds only the default topic, whose one partition is the
// system group.
func initialView() *View {
	d := &Topic{Name: DefaultTopic, Partitions: []Partition{{Index: 0, System: true}}}
	return newView(0, map[string]*Topic{DefaultTopic: d}, []*Topic{d})
}

func newView(index uint64, topics map[string]*Topic, sorted []*Topic) *View {
	return &View{index: index, topics: topics, sorted: sorted, changed: make(chan struct{})}
}

// with returns the view after index: topic t put under its name, or, if t
// is nil, name removed. A nil name changes nothing but the index.
func (v *View) with(index uint64, name string, t *Topic) *View {
	if name == "" {
		return newView(index, v.topics, v.sorted)
	}
	topics := maps.Clone(v.topics)
	if t == nil {
		delete(topics, name)
	} else {
		topics[name] = t
	}
	return newView(index, topics, sortTopics(topics))
}

func sortTopics(topics map[string]*Topic) []*Topic {
	sorted := make([]*Topic, 0, len(topics))
	for _, t := range topics {
		sorted = append(sorted, t)
	}
	slices.SortFunc(sorted, func(a, b *Topic) int { return strings.Compare(a.Name, b.Name) })
	return sorted
}

// Index is the Raft index of the last command applied (0 initially).
func (v *View) Index() uint64 { return v.index }

// Changed is closed once a newer View replaces this one; waiting on the
// channel of the View one acted on misses no change.
func (v *View) Changed() <-chan struct{} { return v.changed }

// Topic returns the topic of that name, or ErrTopicNotFound.
func (v *View) Topic(name string) (*Topic, error) {
	if t, ok := v.topics[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
}

// Topics returns every topic, by name.
func (v *View) Topics() []*Topic { return slices.Clone(v.sorted) }

// Hosted returns the partitions whose replicas include nodeID, by topic
// name and index. The system group's partition, which every voter holds,
// is not among them.
func (v *View) Hosted(nodeID string) []PartitionRef {
	var refs []PartitionRef
	for _, t := range v.sorted {
		for _, p := range t.Partitions {
			if slices.Contains(p.Replicas, nodeID) {
				refs = append(refs, PartitionRef{Topic: t, Partition: p.Index})
			}
		}
	}
	return refs
}

// Load counts the replicas each node holds: what Place balances.
func (v *View) Load() map[string]int {
	load := make(map[string]int)
	for _, t := range v.sorted {
		for _, p := range t.Partitions {
			for _, id := range p.Replicas {
				load[id]++
			}
		}
	}
	return load
}

// Leaders counts the partitions each node is the preferred leader of.
func (v *View) Leaders() map[string]int {
	leaders := make(map[string]int)
	for _, t := range v.sorted {
		for _, p := range t.Partitions {
			if len(p.Replicas) > 0 {
				leaders[p.Replicas[0]]++
			}
		}
	}
	return leaders
}
