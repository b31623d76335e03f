package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// logCache keeps the latest Raft entries in memory in front of the Raft log
// store, like raft.LogCache, but bounded in bytes as well as in entries.
// The leader reads entries back to send them to followers (and the one
// before them, for its term) and a follower reads them back to apply them
// once committed; both are a few entries old, so the cache turns those
// reads (pread and decode on raft's main and replication goroutines) into
// memory loads. raft.LogCache bounds only the count: with streamed batches
// an entry holds a whole group of requests (~0.3 MB at 100 B records, up to
// several MB), and 64 of them pinned 26 MB of a single node's 40 MB live
// heap while producing, which the garbage collector's pacing (GOGC=100)
// doubled in resident memory. A read of an entry no longer cached goes to
// the store, as it would have with raft.LogCache for an older one.
//
// The cache holds the consecutive indexes first..next-1, the newest ones
// stored; an entry that does not follow the newest (a replaced tail, a
// restart after a snapshot) empties it first, and so does DeleteRange.
type logCache struct {
	store    *raftStore
	maxBytes int

	mu    sync.RWMutex
	ring  []*raft.Log // entry i at ring[i%len(ring)], for first <= i < next
	first uint64
	next  uint64
	bytes int // len(Data) of the cached entries

	misses atomic.Uint64 // GetLog calls the store answered
}

// Most entries and bytes the cache holds: see logCache. The newest entries
// up to logCacheBytes stay, and the newest logCacheKeep whatever their
// size: those are the ones being replicated and applied. At 2M records of
// 100 B produced to a three-node cluster (entries of ~0.3 MB) the leader
// read 28 of its ~1,300 entry reads for replication from disk with 1 MiB,
// its followers 5 and 7 of 650. With a stream's window of 128 requests
// (the client's default) entries grow past 1 MiB, and without keep the
// leader read every entry back from disk for each follower (665 misses in
// 341 entries) and each follower for applying it: a third more CPU on the
// leader. Entries are at most produceGroupBytes (4 MiB) of records, so
// keep costs at most ~8 MiB, and only while entries are that large.
const (
	logCacheEntries = 64
	logCacheBytes   = 1 << 20
	logCacheKeep    = 2
)

func newLogCache(store *raftStore, entries, maxBytes int) *logCache {
	return &logCache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }
func (c *logCache) LastIndex() (uint64, error)  { return c.store.LastIndex() }

func (c *logCache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	if index >= c.first && index < c.next {
		*log = *c.ring[index%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	c.misses.Add(1)
	return c.store.GetLog(index, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		// raft.LogCache's text, with the chain kept: raft hands the error
		// to the appends, and ErrDiskFull in it tells the service why.
		return fmt.Errorf("unable to store logs within log store, err: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if l.Index != c.next {
			c.resetLocked()
			c.first, c.next = l.Index, l.Index
		}
		if c.next-c.first == uint64(len(c.ring)) {
			c.evictLocked()
		}
		c.ring[l.Index%uint64(len(c.ring))] = l
		c.next++
		c.bytes += len(l.Data)
		for c.bytes > c.maxBytes && c.next-c.first > logCacheKeep {
			c.evictLocked()
		}
	}
	return nil
}

// evictLocked drops the oldest cached entry.
func (c *logCache) evictLocked() {
	slot := &c.ring[c.first%uint64(len(c.ring))]
	c.bytes -= len((*slot).Data)
	*slot = nil
	c.first++
}

func (c *logCache) resetLocked() {
	clear(c.ring)
	c.first, c.next, c.bytes = 0, 0, 0
}

func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.resetLocked()
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}
