package client

import (
	"context"
	"sync"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"

	"github.com/proglog/proglog/catalog"
)

// maxCachedTopics bounds the cache of topics.
const maxCachedTopics = 4096

// topicCache remembers, per topic, how many partitions it has (for
// splitting keyed records by partition) and where each partition's leader
// and replicas are (for sending appends to the leader directly), as
// learned with DescribeTopic (routes.go). An entry is trusted for
// RefreshInterval; it is dropped when the server refuses a request in a
// way a wrong count explains (NotFound, InvalidArgument), and marked stale
// when an append to one of its partitions fails in a way a change of
// leader explains.
type topicCache struct {
	mu       sync.Mutex
	entries  map[string]topicEntry    // by topic name ("default" for "")
	inflight map[string]*describeCall // by topic name: the one DescribeTopic under way
	gen      uint64                   // numbers the entries
}

type topicEntry struct {
	partitions int              // 0: unknown (the server would not say)
	routes     []partitionRoute // by partition; nil when unknown
	at         time.Time
	gen        uint64 // which answer this is, for invalidate
	stale      bool   // an append failed on what it says: ask again
	// incomplete: no answer knew some partition's leader (a new topic's
	// partitions electing, a node down); trusted for Backoff.Max only.
	incomplete bool
}

// fresh reports whether e may be used without asking again.
func (c *Client) fresh(e topicEntry) bool {
	ttl := c.cfg.RefreshInterval
	if e.incomplete {
		ttl = min(ttl, c.cfg.Backoff.Max)
	}
	return !e.stale && c.cfg.Now().Sub(e.at) < ttl
}

// describeCall is a DescribeTopic the callers of topicEntry share.
type describeCall struct {
	done  chan struct{}
	entry topicEntry
}

// learn caches what was learned of topic name.
func (c *Client) learn(name string, e topicEntry) topicEntry {
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	if c.topics.entries == nil || len(c.topics.entries) >= maxCachedTopics {
		c.topics.entries = map[string]topicEntry{}
	}
	c.topics.gen++
	e.at, e.gen = c.cfg.Now(), c.topics.gen
	c.topics.entries[name] = e
	return e
}

func (c *Client) forgetTopic(name string) {
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	delete(c.topics.entries, topicName(name))
}

// invalidate marks the entry of topic stale if it is still the answer gen
// (a later answer already reflects the failure that calls for this).
func (c *Client) invalidate(topic string, gen uint64) {
	name := topicName(topic)
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	if e, ok := c.topics.entries[name]; ok && e.gen == gen {
		e.stale = true
		c.topics.entries[name] = e
	}
}

// topicEntry returns what the client knows of topic, asking DescribeTopic
// (once for all the callers that want it at the same time) when the cache
// has no fresh answer. Its partitions are 0 when they cannot be known (a
// server without topics, a caller that may not describe the topic, a topic
// that does not exist, no server answering): the records then go unsplit
// and to the cluster's leader, and the server has the last word.
func (c *Client) topicEntry(ctx context.Context, topic string) topicEntry {
	name := topicName(topic)
	c.topics.mu.Lock()
	e, ok := c.topics.entries[name]
	if ok && c.fresh(e) {
		c.topics.mu.Unlock()
		return e
	}
	call, running := c.topics.inflight[name]
	if !running {
		call = &describeCall{done: make(chan struct{})}
		if c.topics.inflight == nil {
			c.topics.inflight = map[string]*describeCall{}
		}
		c.topics.inflight[name] = call
	}
	c.topics.mu.Unlock()
	if running {
		select {
		case <-call.done:
			return call.entry
		case <-ctx.Done():
			return topicEntry{}
		}
	}
	defer func() {
		c.topics.mu.Lock()
		delete(c.topics.inflight, name)
		c.topics.mu.Unlock()
		close(call.done)
	}()
	learned, err := c.describeRoutes(ctx, name)
	switch {
	case err == nil:
		call.entry = c.learn(name, learned)
	case ctx.Err() == nil:
		c.logger.Debug("cannot learn the topic's partitions; sending records unsplit, through the cluster's leader", "topic", name, "err", err)
		call.entry = c.learn(name, topicEntry{})
	}
	return call.entry
}

// partitionCount returns how many partitions topic has (topicEntry); 0
// when it cannot be known.
func (c *Client) partitionCount(ctx context.Context, topic string) int {
	return c.topicEntry(ctx, topic).partitions
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
