package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

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
}

// writeQueueLen bounds the entries handed over but not yet written: when
// the store falls that far behind, applying waits for it.
const writeQueueLen = 64

// maxWriteBatch bounds the records of one store append.
const maxWriteBatch = 1 << 16

// writeReq is a run of records with consecutive offsets from base, or,
// with flushed set, a request to close flushed once everything queued
// before it is written.
type writeReq struct {
	base    uint64
	values  [][]byte
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
		values  [][]byte
		flushes []chan struct{}
		base    uint64
	)
	for req := range w.queue {
		values, flushes = values[:0], flushes[:0]
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
			values = append(values, r.values...)
		}
		add(req)
	more:
		for len(values) < maxWriteBatch {
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
		if len(values) > 0 && w.err.Load() == nil {
			got, err := w.c.current().log.AppendBatch(context.Background(), values)
			if err == nil && got != base {
				err = fmt.Errorf("%w: the local log put the records at %d, want %d", logstore.ErrCorrupt, got, base)
			}
			if err != nil {
				w.fail(err)
			}
		}
		clear(values) // drop references to raft's entries
		for _, f := range flushes {
			close(f)
		}
	}
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
func (w *storeWriter) enqueue(base uint64, values [][]byte) {
	w.queue <- writeReq{base: base, values: values}
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
