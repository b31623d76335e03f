package raftwal

import "sort"

// span is a run of a log's live entries in consecutive WAL records:
// entries first..first+count-1 are the records at..at+count-1, of size
// bytes together (an append of several entries is one span; replay,
// which sees them one record at a time, joins them again).
type span struct {
	first uint64
	count uint64
	at    uint64
	size  int64
}

// state is what a log holds: entries lowest..next-1, in spans (oldest
// first, contiguous). The WAL replays its records into states on open and
// applies each new record to its log's state after the record is durable,
// with the same rules, so a reopened log holds what it held.
type state struct {
	lowest, next uint64
	spans        []span
}

func (s *state) empty() bool { return s.lowest == s.next }

// entries applies count entries from first on, in the records from at
// on. Like a Raft log store's StoreLogs, an
// entry at or below the last one replaces it and everything after it; a
// first entry outside lowest..next restarts the log there.
func (s *state) entries(first, count, at uint64, size int64) {
	switch {
	case first == s.next && !s.empty():
	case s.empty() || first > s.next || first < s.lowest:
		s.reset(first)
	default:
		s.truncateFrom(first)
	}
	if k := len(s.spans); k > 0 && s.spans[k-1].first+s.spans[k-1].count == first && s.spans[k-1].at+s.spans[k-1].count == at {
		s.spans[k-1].count += count
		s.spans[k-1].size += size
	} else {
		s.spans = append(s.spans, span{first: first, count: count, at: at, size: size})
	}
	s.next = first + count
}

// truncateFrom drops the entries from index on.
func (s *state) truncateFrom(index uint64) {
	if index >= s.next {
		return
	}
	if index <= s.lowest {
		s.reset(index)
		return
	}
	k := len(s.spans)
	for k > 0 && s.spans[k-1].first >= index {
		k--
	}
	clear(s.spans[k:])
	s.spans = s.spans[:k]
	if k > 0 {
		last := &s.spans[k-1]
		last.count = min(last.count, index-last.first)
	}
	s.next = index
}

// truncateBefore drops the entries below index.
func (s *state) truncateBefore(index uint64) {
	if index <= s.lowest {
		return
	}
	if index >= s.next {
		s.reset(s.next)
		return
	}
	k := 0
	for k < len(s.spans) && s.spans[k].first+s.spans[k].count <= index {
		k++
	}
	s.spans = append(s.spans[:0], s.spans[k:]...)
	s.lowest = index
}

// reset drops every entry; the next one stored is index.
func (s *state) reset(index uint64) {
	clear(s.spans)
	s.spans = s.spans[:0]
	s.lowest, s.next = index, index
}

// find returns the span holding index, which must be in lowest..next-1.
func (s *state) find(index uint64) span {
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].first+s.spans[i].count > index })
	return s.spans[i]
}

// pin is the WAL offset of the oldest record the log still needs, ok false
// when it needs none.
func (s *state) pin() (at uint64, ok bool) {
	if len(s.spans) == 0 {
		return 0, false
	}
	return s.spans[0].at, true
}

// liveBytes is the size of the records the log still needs.
func (s *state) liveBytes() int64 {
	var n int64
	for _, sp := range s.spans {
		n += sp.size
	}
	return n
}
