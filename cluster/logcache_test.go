package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// TestLogCacheBounds checks that the cache holds the newest entries within
// its entry and byte bounds (the newest logCacheKeep whatever their size),
// answers the rest from the store, and forgets what a replaced tail or
// DeleteRange removed.
func TestLogCacheBounds(t *testing.T) {
	if logCacheKeep != 2 {
		t.Fatalf("the expectations below are for logCacheKeep 2, not %d", logCacheKeep)
	}
	s := openTestRaftStore(t, t.TempDir())
	c := newLogCache(s, 4, 100)
	entry := func(i, term uint64, size int) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)}
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 6; i++ {
		logs = append(logs, entry(i, 1, 10))
	}
	if err := c.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	check := func(first, next uint64, bytes int) {
		t.Helper()
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.first != first || c.next != next || c.bytes != bytes {
			t.Fatalf("cache holds %d..%d (%d bytes), want %d..%d (%d bytes)", c.first, c.next, c.bytes, first, next, bytes)
		}
		n := 0
		for _, l := range c.ring {
			if l != nil {
				n++
			}
		}
		if n != int(next-first) {
			t.Fatalf("%d entries in the ring, want %d", n, next-first)
		}
	}
	read := func(i uint64, wantMiss bool) {
		t.Helper()
		misses := c.misses.Load()
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Index != i || len(l.Data) == 0 || l.Data[0] != byte(i) {
			t.Fatalf("GetLog(%d) = index %d, data %v", i, l.Index, l.Data)
		}
		if miss := c.misses.Load() != misses; miss != wantMiss {
			t.Fatalf("GetLog(%d): miss %v, want %v", i, miss, wantMiss)
		}
	}
	check(3, 7, 40) // at most 4 entries
	read(2, true)
	read(3, false)
	read(6, false)

	// Bytes: 30 + 50 + 40 > 100 drops the oldest until the new entry fits.
	if err := c.StoreLogs([]*raft.Log{entry(7, 1, 50), entry(8, 1, 40)}); err != nil {
		t.Fatal(err)
	}
	check(6, 9, 100)
	read(5, true)
	read(8, false)
	// The newest two stay whatever their size: an entry larger than the
	// budget is kept with the one before it, the older ones go.
	if err := c.StoreLog(entry(9, 1, 101)); err != nil {
		t.Fatal(err)
	}
	check(8, 10, 141)
	read(7, true)
	read(8, false)
	read(9, false)
	if err := c.StoreLog(entry(10, 1, 10)); err != nil {
		t.Fatal(err)
	}
	check(9, 11, 111)
	if err := c.StoreLog(entry(11, 1, 10)); err != nil {
		t.Fatal(err)
	}
	check(10, 12, 20)
	read(9, true)

	// A replaced tail (a new leader's entries from 8 on) starts over.
	if err := c.StoreLogs([]*raft.Log{entry(8, 2, 10), entry(9, 2, 10)}); err != nil {
		t.Fatal(err)
	}
	check(8, 10, 20)
	var l raft.Log
	if err := c.GetLog(10, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(10) after the tail was replaced: %v, want ErrLogNotFound", err)
	}
	if err := c.GetLog(9, &l); err != nil || l.Term != 2 {
		t.Fatalf("GetLog(9) = term %d, %v; want the replacing entry's term 2", l.Term, err)
	}
	if err := c.DeleteRange(1, 9); err != nil {
		t.Fatal(err)
	}
	check(0, 0, 0)
	if err := c.GetLog(9, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(9) after DeleteRange: %v, want ErrLogNotFound", err)
	}
	// The first entry after an installed snapshot restarts the log.
	if err := c.StoreLog(entry(20, 3, 10)); err != nil {
		t.Fatal(err)
	}
	check(20, 21, 10)
	read(20, false)
}
