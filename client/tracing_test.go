package client_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// With TraceHeaders a produce stores its publish span's context in each
// record; RecordSpanContext finds it in what a consumer reads. The
// records given are not changed, and a record's own traceparent is kept.
func TestTraceHeaders(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...), TracerProvider: tp, TraceHeaders: true})

	own := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	recs := []*logv1.Record{
		{Value: []byte("a"), Headers: []*logv1.Header{{Key: "k", Value: []byte("v")}}},
		{Value: []byte("b"), Headers: []*logv1.Header{{Key: client.TraceparentHeader, Value: []byte(own)}}},
	}
	base, err := c.ProduceRecords(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs[0].GetHeaders()) != 1 {
		t.Fatalf("the caller's record was changed: %v", recs[0])
	}
	var publish, call tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch {
		case s.Name == "publish default":
			publish = s
		case s.Name == "log.v1.LogService/ProduceBatch" && s.SpanKind == trace.SpanKindClient:
			call = s
		}
	}
	if publish.SpanKind != trace.SpanKindProducer || call.Parent.SpanID() != publish.SpanContext.SpanID() {
		t.Fatalf("want a producer span with the ProduceBatch call under it: publish %+v, call parent %v", publish.SpanContext, call.Parent)
	}

	waitApplied(t, base+2, nodes...)
	got, err := c.Consume(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	sc := client.RecordSpanContext(got)
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID() != publish.SpanContext.TraceID() || sc.SpanID() != publish.SpanContext.SpanID() {
		t.Fatalf("RecordSpanContext = %v, want the publish span %v; headers %v", sc, publish.SpanContext, got.GetHeaders())
	}
	if h := got.GetHeaders(); len(h) != 2 || h[0].GetKey() != "k" {
		t.Fatalf("headers %v: want the record's own first, then traceparent", h)
	}
	got, err = c.Consume(t.Context(), base+1)
	if err != nil {
		t.Fatal(err)
	}
	if link, ok := client.RecordLink(got); !ok || link.SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("a record's own traceparent was replaced: %v", got.GetHeaders())
	}
	if _, ok := client.RecordLink(&logv1.Record{Value: []byte("plain")}); ok {
		t.Fatal("a link from a record without trace headers")
	}
}
