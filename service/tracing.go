package service

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (see "Tracing" in doc.go). With a TracerProvider, every
// LogService call gets a server span (otelconnect's: rpc.system,
// rpc.service, rpc.method, status code), whose parent is the caller's
// W3C traceparent header, whatever the protocol (gRPC, gRPC-Web,
// Connect); a Forwarder's calls to peers get client spans whose
// traceparent continues the trace on the peer. Without one no interceptor
// is installed and nothing below costs more than a nil check.

// tracerName names the instrumentation scope of the service's own spans.
const tracerName = "github.com/proglog/proglog/service"

// Span attributes of the service's spans.
const (
	attrTopic     = attribute.Key("proglog.topic")
	attrPartition = attribute.Key("proglog.partition")
	attrRecords   = attribute.Key("proglog.records")
	attrOffset    = attribute.Key("proglog.offset")
	attrForwarded = attribute.Key("proglog.forwarded")
)

// propagator is W3C Trace Context, as everywhere in proglog.
var propagator = propagation.TraceContext{}

// otelInterceptor is otelconnect's interceptor for tp: spans only (the
// metrics stay Prometheus's), and on the server a caller's traceparent is
// trusted as the parent, so a trace goes on across nodes and from the
// browser. Trusting it costs nothing: a caller can only choose which
// trace its own call joins.
func otelInterceptor(tp trace.TracerProvider) (connect.Interceptor, error) {
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagator),
		otelconnect.WithoutMetrics(),
		otelconnect.WithTrustRemote(),
	)
	if err != nil {
		return nil, fmt.Errorf("service: tracing interceptor: %w", err)
	}
	return i, nil
}

// ForwarderOption configures a Forwarder.
type ForwarderOption interface{ applyForwarder(*Forwarder) error }

type forwarderTracing struct{ tp trace.TracerProvider }

func (o forwarderTracing) applyForwarder(f *Forwarder) error {
	if o.tp == nil {
		return nil
	}
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(o.tp),
		otelconnect.WithPropagator(propagator),
		otelconnect.WithoutMetrics(),
		// Only calls made for a traced request: a node's own background
		// calls (healing a record, watching a move) start no traces.
		otelconnect.WithFilter(func(ctx context.Context, _ connect.Spec) bool {
			return trace.SpanContextFromContext(ctx).IsValid()
		}),
	)
	if err != nil {
		return fmt.Errorf("service: tracing interceptor: %w", err)
	}
	f.tracing = i
	return nil
}

// WithForwardTracing gives every call a Forwarder makes for a traced
// request (one whose context holds a span) a client span of tp and a
// traceparent header, so the trace of a forwarded produce goes on at the
// leader. nil: no spans.
func WithForwardTracing(tp trace.TracerProvider) ForwarderOption { return forwarderTracing{tp} }

// The helpers below check whether the span records before they build
// any attribute: with tracing off they allocate nothing.

// readSpan starts the span of a read of partition p of topic under ctx's
// span, or, when tracing is off, returns ctx and the no-op span already in
// it.
func (s *Service) readSpan(ctx context.Context, topic string, p uint32) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return s.tracer.Start(ctx, "proglog.read", trace.WithAttributes(attrTopic.String(topic), attrPartition.Int(int(p))))
}

// reading describes a read of partition p of topic on its RPC's span.
func reading(ctx context.Context, topic string, p uint32) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrTopic.String(topic), attrPartition.Int(int(p)))
	}
}

// produced describes a produce on its RPC's span: where its records go.
func produced(ctx context.Context, topic string, p, records int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrTopic.String(topic), attrPartition.Int(p), attrRecords.Int(records))
	}
}

// forwarded marks a produce's RPC span: another node took its records.
func forwarded(ctx context.Context) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrForwarded.Bool(true))
	}
}

// waited records one wait of a ConsumeStream for new records as an event
// of its span: one per wait, never one per record.
func waited(ctx context.Context, offset uint64, start time.Time, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attrOffset.Int64(int64(offset)), attribute.Int64("proglog.wait_ms", time.Since(start).Milliseconds())}
	if err != nil {
		attrs = append(attrs, attribute.String("error", err.Error()))
	}
	span.AddEvent("proglog.wait", trace.WithAttributes(attrs...))
}
