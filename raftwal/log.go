package raftwal

import (
	"context"
	"fmt"
	"sync"

	"github.com/proglog/proglog/logstore"
)

// Log is one Raft log kept in a WAL: its entries are numbered by their
// Raft index and read and written with the same methods as a
// logstore.Log, so a Raft log store can keep its entries in either.
type Log struct {
	w   *WAL
	key key

	// wmu serializes the log's writes, so its records are in the WAL in
	// the order its state applies them; it is held across the append (and
	// its fdatasync), which readers do not wait for.
	wmu sync.Mutex
	// mu guards the rest; readers hold it while they read a record, so a
	// record stays in the WAL while a span points to it.
	mu   sync.RWMutex
	st   state
	open bool
}

// apply applies a record of size bytes at WAL offset at to the log's
// state. Caller holds mu or owns the log alone (replay).
func (l *Log) apply(rec record, at uint64, size int64) {
	switch rec.kind {
	case kindEntry:
		l.st.entries(rec.index, 1, at, size)
	case kindTruncateFrom:
		l.st.truncateFrom(rec.index)
	case kindTruncateBefore:
		l.st.truncateBefore(rec.index)
	case kindReset:
		l.st.reset(rec.index)
	}
}

// Bounds returns the lowest stored index and the next one to be written;
// lowest == next when the log holds no entries.
func (l *Log) Bounds() (lowest, next uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.lowest, l.st.next
}

func (l *Log) isOpen() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.open
}

// appendEntries writes values as the entries from first on (a record
// each, in one append: one write and one fdatasync, shared with other
// logs' appends) and applies them once durable. Caller holds wmu.
func (l *Log) appendEntries(first uint64, values [][]byte) error {
	size := 0
	for _, v := range values {
		size += headerSize(l.key) + len(v)
	}
	buf := bufPool.Get(size)
	defer bufPool.Put(buf)
	recs := make([][]byte, len(values))
	b := *buf
	for i, v := range values {
		start := len(b)
		b = appendRecord(b, kindEntry, l.key, first+uint64(i), v)
		recs[i] = b[start:]
	}
	*buf = b
	at, applied, err := l.w.append(recs)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.st.entries(first, uint64(len(values)), at, int64(len(b)))
	l.mu.Unlock()
	applied()
	return nil
}

// AppendBatch appends the values as the entries from the next index on,
// durably, and returns the first one's index.
func (l *Log) AppendBatch(_ context.Context, values [][]byte) (uint64, error) {
	if len(values) == 0 {
		return 0, fmt.Errorf("raftwal: AppendBatch of no entries")
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if !l.isOpen() {
		return 0, logstore.ErrClosed
	}
	_, first := l.Bounds()
	if err := l.appendEntries(first, values); err != nil {
		return 0, err
	}
	return first, nil
}

// truncate writes a truncation record and applies it once durable,
// unless it would change nothing. Renumbering an empty log (a reset of
// one) writes no record either: replay treats an empty log's numbering as
// unknown, and its next entry restarts it anyway.
func (l *Log) truncate(kind byte, index uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if !l.isOpen() {
		return logstore.ErrClosed
	}
	rec := record{kind: kind, key: l.key, index: index}
	lowest, next := l.Bounds()
	switch {
	case kind == kindTruncateFrom && index >= next, kind == kindTruncateBefore && index <= lowest:
		return nil
	case kind == kindReset && lowest == next:
		l.mu.Lock()
		l.apply(rec, 0, 0)
		l.mu.Unlock()
		return nil
	}
	at, applied, err := l.w.append([][]byte{encodeControl(kind, l.key, index)})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.apply(rec, at, 0)
	l.mu.Unlock()
	applied()
	if kind != kindTruncateFrom {
		l.w.kick() // the WAL may no longer need its oldest segments
	}
	return nil
}

// TruncateFrom drops the entries from index on.
func (l *Log) TruncateFrom(index uint64) error { return l.truncate(kindTruncateFrom, index) }

// TruncateBefore drops the entries below index.
func (l *Log) TruncateBefore(index uint64) error { return l.truncate(kindTruncateBefore, index) }

// Reset drops every entry; the next one appended gets index next.
func (l *Log) Reset(next uint64) error { return l.truncate(kindReset, next) }

// Read returns the entry at index (Record.Offset is the index, Value its
// bytes, the caller's own), or an error wrapping logstore.ErrOutOfRange.
func (l *Log) Read(_ context.Context, index uint64) (logstore.Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.open {
		return logstore.Record{}, logstore.ErrClosed
	}
	v, err := l.value(index)
	if err != nil {
		return logstore.Record{}, err
	}
	return logstore.Record{Offset: index, Value: v}, nil
}

// ReadBatch appends to dst the entries from index on, at most maxRecords
// and (after the first) maxBytes of values.
func (l *Log) ReadBatch(_ context.Context, index uint64, maxRecords, maxBytes int, dst []logstore.Record) ([]logstore.Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.open {
		return dst, logstore.ErrClosed
	}
	bytes := 0
	for n := 0; n < maxRecords && index < l.st.next; n, index = n+1, index+1 {
		v, err := l.value(index)
		if err != nil {
			return dst, err
		}
		if n > 0 && bytes+len(v) > maxBytes {
			break
		}
		bytes += len(v)
		dst = append(dst, logstore.Record{Offset: index, Value: v})
	}
	return dst, nil
}

// value reads entry index from its WAL record (a buffer of its own) and
// checks that the record is that entry. Caller holds mu for reading, so
// the record stays in the WAL.
func (l *Log) value(index uint64) ([]byte, error) {
	if index < l.st.lowest || index >= l.st.next {
		return nil, fmt.Errorf("%w: entry %d of %s (holds %d..%d)", logstore.ErrOutOfRange, index, l.key.name, l.st.lowest, l.st.next)
	}
	sp := l.st.find(index)
	at := sp.at + (index - sp.first)
	b, err := l.w.read(at)
	if err != nil {
		return nil, fmt.Errorf("raftwal: entry %d of %s: %w", index, l.key.name, err)
	}
	rec, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("raftwal: entry %d of %s: WAL record %d: %w", index, l.key.name, at, err)
	}
	if rec.kind != kindEntry || rec.key != l.key || rec.index != index {
		return nil, fmt.Errorf("raftwal: entry %d of %s: WAL record %d is not that entry: %w", index, l.key.name, at, ErrCorrupt)
	}
	return rec.value, nil
}

// relocate writes the log's live entries again at the end of the WAL, so
// the records they were in can be deleted; a closed log's too (its group
// may open it again).
func (l *Log) relocate() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	first, next := l.st.lowest, l.st.next
	values := make([][]byte, 0, next-first)
	for i := first; i < next; i++ {
		v, err := l.value(i)
		if err != nil {
			l.mu.RUnlock()
			return err
		}
		values = append(values, v)
	}
	l.mu.RUnlock()
	if len(values) == 0 {
		return nil
	}
	return l.appendEntries(first, values)
}

// Close detaches the log: its entries stay in the WAL for the next Open of
// its directory.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.open {
		return logstore.ErrClosed
	}
	l.open = false
	return nil
}
