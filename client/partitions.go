package client

import (
	"context"
	"sync"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"

	"github.com/proglog/proglog/catalog"
)

// maxCachedTopics bounds the cache of partition counts.
const maxCachedTopics = 4096

// topicCache remembers how many partitions each topic has, for splitting
// keyed records by partition. An entry is trusted for RefreshInterval and
// dropped when the server refuses a request in a way a wrong count
// explains (NotFound, InvalidArgument).
type topicCache struct {
	mu      sync.Mutex
	entries map[string]topicEntry // by topic name ("default" for "")
}

type topicEntry struct {
	partitions int // 0: unknown (the server would not say)
	at         time.Time
}

func (c *Client) learnTopic(name string, partitions int) {
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	if c.topics.entries == nil || len(c.topics.entries) >= maxCachedTopics {
		c.topics.entries = map[string]topicEntry{}
	}
	c.topics.entries[topicName(name)] = topicEntry{partitions: partitions, at: c.cfg.Now()}
}

func (c *Client) forgetTopic(name string) {
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	delete(c.topics.entries, topicName(name))
}

// partitionCount returns how many partitions topic has, asking
// DescribeTopic when the cache has no fresh answer; 0 when it cannot be
// known (a server without topics, a caller that may not describe the
// topic, a topic that does not exist, no server answering): the records
// then go unsplit, and the server has the last word.
func (c *Client) partitionCount(ctx context.Context, topic string) int {
	name := topicName(topic)
	c.topics.mu.Lock()
	e, ok := c.topics.entries[name]
	c.topics.mu.Unlock()
	if ok && c.cfg.Now().Sub(e.at) < c.cfg.RefreshInterval {
		return e.partitions
	}
	d, err := c.DescribeTopic(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Debug("cannot learn the topic's partitions; sending records unsplit", "topic", name, "err", err)
			c.learnTopic(name, 0)
		}
		return 0
	}
	return d.Topic.Partitions
}

// part is the records of one request of a split append: indices into the
// records given, and the partition named in the request.
type part struct {
	idx       []int // nil: every record
	partition int
	named     bool // the request names partition
}

// split groups records by partition. With a partition named (t), or when
// the topic has at most one partition (n <= 1, 0 for unknown), or no
// record has a key, they stay together and the server places them. Else
// each keyed record goes to catalog.PartitionForKey(key, n), named in its
// request, in the order given within each partition, and the records
// without a key go together in one request that names no partition (the
// server spreads those). Parts come in the order of their first record.
func split(t target, records []*logv1.Record, n int) []part {
	if t.partitionSet {
		return []part{{partition: t.partition, named: true}}
	}
	keyed := false
	for _, r := range records {
		if len(r.GetKey()) > 0 {
			keyed = true
			break
		}
	}
	if n <= 1 || !keyed {
		return []part{{}}
	}
	var parts []part
	byPartition := map[int]int{} // partition -> index in parts; -1 for keyless
	for i, r := range records {
		p, named := -1, false
		if len(r.GetKey()) > 0 {
			p, named = catalog.PartitionForKey(r.GetKey(), n), true
		}
		j, ok := byPartition[p]
		if !ok {
			j = len(parts)
			byPartition[p] = j
			parts = append(parts, part{partition: max(p, 0), named: named})
		}
		parts[j].idx = append(parts[j].idx, i)
	}
	if len(parts) == 1 {
		parts[0].idx = nil
	}
	return parts
}

// records returns the part's records of all.
func (p part) records(all []*logv1.Record) []*logv1.Record {
	if p.idx == nil {
		return all
	}
	out := make([]*logv1.Record, len(p.idx))
	for i, j := range p.idx {
		out[i] = all[j]
	}
	return out
}

// target returns t with the part's partition named, if it names one.
func (p part) target(t target) target {
	if p.named {
		t.partition, t.partitionSet = p.partition, true
	}
	return t
}
