package client

import (
	"fmt"
	"math"

	"github.com/proglog/proglog/catalog"
)

// target is the topic and partition a call works on.
type target struct {
	topic        string // "" is the default topic
	partition    int
	partitionSet bool
	err          error // a bad option, reported by the call
}

// CallOption configures one call: which topic and partition a Produce,
// ProduceBatch, ProduceRecords, ProduceSplit, Consume, ConsumeTime, Stats,
// ServerStats or OffsetForTime works on. Topic and Partition make them.
type CallOption interface{ applyCall(*target) }

// TopicOption names the topic or the partition of a call, a tail or a
// Producer: it is a CallOption, a TailOption and a ProducerOption.
type TopicOption struct{ apply func(*target) }

func (o TopicOption) applyCall(t *target)       { o.apply(t) }
func (o TopicOption) applyTail(c *tailConfig)   { o.apply(&c.target) }
func (o TopicOption) applyProducer(p *Producer) { o.apply(&p.target) }

// Topic names the topic to produce to or read from; without it (or with
// "") calls use the topic "default".
func Topic(name string) TopicOption {
	return TopicOption{func(t *target) { t.topic = name }}
}

// Partition names the partition of the topic. Reads use partition 0
// without it. Appends without it go where the records' keys map to
// (Kafka's default partitioner over the topic's partition count, which
// the client learns with DescribeTopic), and records without keys where
// the server spreads them.
func Partition(p int) TopicOption {
	return TopicOption{func(t *target) {
		if p < 0 || p > math.MaxUint32 {
			t.err = fmt.Errorf("client: partition %d out of range", p)
			return
		}
		t.partition, t.partitionSet = p, true
	}}
}

func targetOf(opts []CallOption) (target, error) {
	var t target
	for _, o := range opts {
		o.applyCall(&t)
	}
	if t.err != nil {
		return t, t.err
	}
	return t, nil
}

// wirePartition is the partition for a request's optional field: nil when
// none is named.
func (t target) wirePartition() *uint32 {
	if !t.partitionSet {
		return nil
	}
	p := uint32(t.partition)
	return &p
}

// name is the topic as the catalogue names it.
func (t target) name() string { return topicName(t.topic) }

// topicName maps "" to the default topic's name.
func topicName(topic string) string {
	if topic == "" {
		return catalog.DefaultTopic
	}
	return topic
}
