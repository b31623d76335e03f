package cluster_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// An append on a traced Log is one raft.apply span under the caller's,
// with the entry's records, bytes and index, and one raft.fsync span under
// it: the write of Raft's log that held the entry, before the apply ended.
func TestTraceAppend(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	traced := func(c *cluster.Config) {
		c.TracerProvider = tp
		c.SpanAttributes = []attribute.KeyValue{attribute.String("proglog.topic", "orders")}
	}
	n := newTestPKI(t).startNode(t, "solo", t.TempDir(), "", true, traced)
	defer n.stop(t)
	waitLeader(t, n)

	ctx, caller := tp.Tracer("test").Start(t.Context(), "caller")
	recs := []logstore.Record{{Value: []byte("one")}, {Value: []byte("two"), Key: []byte("k")}}
	if _, err := n.log.AppendRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	caller.End()

	var apply, fsync tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "raft.apply":
			apply = s
		case "raft.fsync":
			fsync = s
		}
	}
	if apply.Parent.SpanID() != caller.SpanContext().SpanID() {
		t.Fatalf("raft.apply's parent %v, want the caller's span %v", apply.Parent.SpanID(), caller.SpanContext().SpanID())
	}
	if fsync.Parent.SpanID() != apply.SpanContext.SpanID() {
		t.Fatalf("raft.fsync's parent %v, want raft.apply %v", fsync.Parent.SpanID(), apply.SpanContext.SpanID())
	}
	want := map[string]string{
		"proglog.topic": "orders", "proglog.raft.group": "system", "proglog.records": "2",
		"proglog.bytes": "", "raft.index": "",
	}
	got := map[string]string{}
	for _, kv := range apply.Attributes {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || (v != "" && g != v) {
			t.Errorf("raft.apply: %s = %q, want %q (all: %v)", k, g, v, got)
		}
	}
	if fsync.StartTime.Before(apply.StartTime) || fsync.EndTime.After(apply.EndTime) {
		t.Errorf("raft.fsync [%v, %v] outside raft.apply [%v, %v]", fsync.StartTime, fsync.EndTime, apply.StartTime, apply.EndTime)
	}
}
