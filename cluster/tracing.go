package cluster

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/logstore"
)

// Tracing of appends (Config.TracerProvider). Each AppendRecords on the
// leader is one "raft.apply" span, from raft.Apply to its future's answer
// (replication to a quorum, commit, and this node's FSM), a child of the
// caller's span (the RPC's), with the entry's records, bytes and Raft
// index. Its child "raft.fsync" is the write and fdatasync of this node's
// Raft log that held the entry, with that write's real start and end: the
// write happens on raft's goroutine for a batch of entries, so the store
// notes every write (first..last index, times) in a small ring, and the
// append, once raft gave it its index, finds its own. One span of each per
// append, whatever the number of records; none per record. Followers'
// fsyncs are not in the trace: nothing of the caller's context reaches
// their raft goroutine.

const tracerName = "github.com/proglog/proglog/cluster"

// Span attributes of the append spans.
const (
	attrGroup      = attribute.Key("proglog.raft.group")
	attrRecords    = attribute.Key("proglog.records")
	attrBytes      = attribute.Key("proglog.bytes")
	attrIndex      = attribute.Key("raft.index")
	attrFirstIndex = attribute.Key("raft.first_index")
	attrLastIndex  = attribute.Key("raft.last_index")
)

// appendTracing starts the spans of appends to one Log. A nil
// *appendTracing traces nothing.
type appendTracing struct {
	tracer trace.Tracer
	attrs  []attribute.KeyValue // the Log's: group, topic, partition
	syncs  syncRing
}

func newAppendTracing(tp trace.TracerProvider, group string, attrs []attribute.KeyValue) *appendTracing {
	name := group
	if name == "" {
		name = "system"
	}
	return &appendTracing{
		tracer: tp.Tracer(tracerName),
		attrs:  append([]attribute.KeyValue{attrGroup.String(name)}, attrs...),
	}
}

// start starts the apply span of recs (nil when tracing is off).
func (t *appendTracing) start(ctx context.Context, recs []logstore.Record) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, "raft.apply", trace.WithAttributes(t.attrs...))
	if span.IsRecording() {
		size := 0
		for i := range recs {
			size += recs[i].Size()
		}
		span.SetAttributes(attrRecords.Int(len(recs)), attrBytes.Int(size))
	}
	return ctx, span
}

// end ends the apply span with the entry's index (0: raft gave none) and
// the fsync span under it.
func (t *appendTracing) end(ctx context.Context, span trace.Span, index uint64, err error) {
	if span == nil {
		return
	}
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if index == 0 {
		return
	}
	span.SetAttributes(attrIndex.Int64(int64(index)))
	if w, ok := t.syncs.find(index); ok {
		_, fsync := t.tracer.Start(ctx, "raft.fsync", trace.WithTimestamp(w.start), trace.WithAttributes(
			attrFirstIndex.Int64(int64(w.first)), attrLastIndex.Int64(int64(w.last))))
		fsync.End(trace.WithTimestamp(w.end))
	}
}

// syncWrite is one write and fdatasync of Raft's log.
type syncWrite struct {
	first, last uint64
	start, end  time.Time
}

// syncRing keeps the latest writes of Raft's log. An append looks its
// write up moments after it (raft commits an entry only once the leader
// stored it), so a short memory is enough; one that scrolled away just
// has no fsync span.
type syncRing struct {
	mu     sync.Mutex // guards writes and next
	writes [64]syncWrite
	next   int
}

// add notes a write; raftStore.synced.
func (r *syncRing) add(first, last uint64, start, end time.Time) {
	r.mu.Lock()
	r.writes[r.next] = syncWrite{first: first, last: last, start: start, end: end}
	r.next = (r.next + 1) % len(r.writes)
	r.mu.Unlock()
}

// find returns the latest write that held index.
func (r *syncRing) find(index uint64) (syncWrite, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range len(r.writes) {
		w := r.writes[(r.next-1-i+2*len(r.writes))%len(r.writes)]
		if w.first != 0 && w.first <= index && index <= w.last {
			return w, true
		}
	}
	return syncWrite{}, false
}
