package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proglog/proglog/logstore"
)

// storeWriter appends applied records to the local store off the FSM's
// goroutine. Raft answers an append once its entry is applied, and applying
// only hands the records over here, so the store write (no fsync: the Raft
// log is the durable copy) overlaps with replicating and applying the next
// entries instead of delaying every acknowledgement. Requests are written
// in the order they are queued, as many per AppendBatch as are waiting.
// Readers that ask for a committed record not yet written wait for it
// (Log.Read); Snapshot and Restore flush first.
type storeWriter struct {
	c     *Log
	queue chan writeReq
	done  chan struct{} // closed when run returns
	stop  sync.Once
	err   atomic.Pointer[error] // the first write failure; nothing is written after it
	// stalled is the latest write error while write retries it.
	stalled atomic.Pointer[error]
	// held, when set (tests only), is waited on before each write: a
	// store that lags behind applying.
	held atomic.Pointer[chan struct{}]
}

// writeQueueLen bounds the entries handed over but not yet written: when
// the store falls that far behind, applying waits for it.
const writeQueueLen = 64

// maxWriteBatch bounds the records of one store append (the entries
// queued are gathered until they reach it). The writer's slice of records
// and the store's two write buffers keep the size of the largest append:
// at 1<<16 records a writer a few entries behind kept ~4 MB in each, which
// the garbage collector's pacing doubles in resident memory. 4096 records
// of 100 B are ~0.6 MB of frames, still few write calls (no fsync here).
const maxWriteBatch = 4096

// maxWriteBatchBytes bounds the same by the records' bytes (values, keys
// and headers): with large records, 4096 of them would be a frame buffer
// of gigabytes, made whole before it is written. An entry is gathered
// whole, so one append may pass it by an entry (at most 4 MiB of records)
// and a single entry larger than it is still one append. At this size
// logstore keeps the buffer for the next append.
const maxWriteBatchBytes = 4 << 20

// writeReq is a run of records with consecutive offsets from base, or,
// with flushed set, a request to close flushed once everything queued
// before it is written.
type writeReq struct {
	base    uint64
	runs    [][]logstore.Record  // consecutive runs, the first at base
	slabs   []*[]logstore.Header // the runs' header slabs, put back once written
	flushed chan struct{}
}

func newStoreWriter(c *Log) *storeWriter {
	w := &storeWriter{c: c, queue: make(chan writeReq, writeQueueLen), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *storeWriter) run() {
	defer close(w.done)
	var (
		values  []logstore.Record
		flushes []chan struct{}
		slabs   []*[]logstore.Header
		base    uint64
		size    int // the bytes of values' records
	)
	for req := range w.queue {
		values, flushes, slabs, size = values[:0], flushes[:0], slabs[:0], 0
		add := func(r writeReq) {
			if r.flushed != nil {
				flushes = append(flushes, r.flushed)
				return
			}
			if len(values) == 0 {
				base = r.base
			} else if r.base != base+uint64(len(values)) {
				w.fail(fmt.Errorf("%w: records for offset %d queued after the run ending at %d", logstore.ErrCorrupt, r.base, base+uint64(len(values))))
			}
			for _, run := range r.runs {
				for i := range run {
					size += run[i].Size()
				}
				values = append(values, run...)
				putRecords(run) // copied: decodeEntry may reuse it
			}
			slabs = append(slabs, r.slabs...)
		}
		add(req)
	more:
		for len(values) < maxWriteBatch && size < maxWriteBatchBytes {
			select {
			case r, ok := <-w.queue:
				if !ok {
					break more
				}
				add(r)
			default:
				break more
			}
		}
		if h := w.held.Load(); h != nil {
			<-*h
		}
		if len(values) > 0 && w.err.Load() == nil {
			w.write(base, values)
		}
		clear(values) // drop references to raft's entries
		for i, p := range slabs {
			putHeaders(p) // written (or failed for good): unused now
			slabs[i] = nil
		}
		for _, f := range flushes {
			close(f)
		}
	}
}

// write appends values at base. A store that cannot write them (a full
// disk, an I/O error) fails for good (logstore.ErrFailed), so the writer
// reopens it and writes what it lacks again, backing off, until it succeeds
// or the node closes: a disk that fills up stalls applying until space is
// freed, and then the node goes on by itself. Meanwhile stalled says why.
func (w *storeWriter) write(base uint64, values []logstore.Record) {
	backoff := 100 * time.Millisecond
	closed := false // the latest reopen failed
	for {
		err := w.append(base, values)
		if err == nil || errors.Is(err, logstore.ErrCorrupt) {
			if err != nil {
				w.fail(err)
			}
			if w.stalled.Swap(nil) != nil {
				w.c.logger.Info("cluster: the local store writes again")
			}
			return
		}
		if w.stalled.Swap(&err) == nil {
			w.c.logger.Error("cluster: writing applied records to the local store failed; retrying until it works (applying waits meanwhile)", "err", err)
		}
		select {
		case <-w.c.done:
			w.fail(err) // Raft re-applies the records on the next start
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		if errors.Is(err, syscall.ENOSPC) && !closed {
			// Reopening needs some space (Open cuts the failed write and
			// keeps a copy of it); until then the failed store still
			// serves reads.
			w.c.disk.probe()
			if w.c.disk.free.Load() < w.c.disk.recoverFree {
				continue
			}
		}
		// A failed reopen leaves the store closed: from then on there is
		// nothing to keep serving, so every round tries again.
		closed = false
		if err := w.c.replaceStore(nil); err != nil {
			w.c.logger.Warn("cluster: reopening the local store", "err", err)
			closed = true
		}
	}
}

// append writes the part of values the store does not hold yet: a failed
// append may have written some of them before it failed.
func (w *storeWriter) append(base uint64, values []logstore.Record) error {
	lg := w.c.current().log
	_, have := lg.Bounds()
	switch {
	case have < base:
		return fmt.Errorf("%w: the local log ends at %d, the records to write start at %d", logstore.ErrCorrupt, have, base)
	case have >= base+uint64(len(values)):
		return nil
	}
	rest := values[have-base:]
	got, err := lg.AppendRecords(context.Background(), rest)
	if err == nil && got != have {
		err = fmt.Errorf("%w: the local log put the records at %d, want %d", logstore.ErrCorrupt, got, have)
	}
	return err
}

func (w *storeWriter) fail(err error) {
	if w.err.CompareAndSwap(nil, &err) {
		w.c.logger.Error("cluster: writing applied records to the local store failed; this node serves no new records until restarted", "err", err)
	}
}

// failure returns the first write failure, or nil.
func (w *storeWriter) failure() error {
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

// enqueue hands records over; called by the FSM only.
func (w *storeWriter) enqueue(base uint64, runs [][]logstore.Record, slabs []*[]logstore.Header) {
	w.queue <- writeReq{base: base, runs: runs, slabs: slabs}
}

// flush returns once everything enqueued before it is written (or failed).
// Called by the FSM only.
func (w *storeWriter) flush() error {
	ch := make(chan struct{})
	w.queue <- writeReq{flushed: ch}
	<-ch
	return w.failure()
}

// close writes what is queued and stops the writer. Call it once raft has
// shut down: nothing enqueues after that.
func (w *storeWriter) close() {
	w.stop.Do(func() {
		close(w.queue)
		<-w.done
	})
}
