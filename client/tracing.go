package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Tracing. With Config.TracerProvider every call is a client span
// (otelconnect's conventions) whose W3C traceparent header continues the
// trace on the server, and on to the leader when the server forwards it.
// With Config.TraceHeaders a produce also stores its trace context in each
// record, as the record headers traceparent (and tracestate), so that a
// consumer can link its own work to the producer's (RecordSpanContext).

// Record header keys of a producer's trace context (W3C Trace Context).
const (
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
)

const tracerName = "github.com/proglog/proglog/client"

var propagator = propagation.TraceContext{}

// tracingOption is the client option that traces every call, or nil.
func tracingOption(tp trace.TracerProvider) (connect.ClientOption, error) {
	if tp == nil {
		return nil, nil
	}
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagator),
		otelconnect.WithoutMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("client: tracing: %w", err)
	}
	return connect.WithInterceptors(i), nil
}

// noSpan ends nothing.
func noSpan(error) {}

// producing prepares a produce of records to topic for Config.TraceHeaders:
// with a TracerProvider it starts a producer span, "publish <topic>", for
// the whole call (retries included), and it returns copies of the records
// whose headers carry that span's context (without one: ctx's span's, if
// any). A record that has a traceparent header already keeps it. The
// records given are not modified. Without TraceHeaders it returns what it
// was given.
func (c *Client) producing(ctx context.Context, topic string, records []*logv1.Record) (context.Context, []*logv1.Record, func(error)) {
	if !c.cfg.TraceHeaders {
		return ctx, records, noSpan
	}
	end := noSpan
	if c.tracer != nil {
		var span trace.Span
		ctx, span = c.tracer.Start(ctx, "publish "+topicName(topic), trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "proglog"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", topicName(topic)),
				attribute.Int("messaging.batch.message_count", len(records)),
			))
		end = func(err error) {
			if err != nil {
				span.RecordError(err)
			}
			span.End()
		}
	}
	return ctx, withTraceHeaders(ctx, records), end
}

// withTraceHeaders returns records with ctx's trace context in their
// headers (new records where one is added).
func withTraceHeaders(ctx context.Context, records []*logv1.Record) []*logv1.Record {
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	tp := carrier[TraceparentHeader]
	if tp == "" {
		return records // no valid span in ctx
	}
	ts := carrier[TracestateHeader]
	out := make([]*logv1.Record, len(records))
	for i, r := range records {
		if hasHeader(r, TraceparentHeader) {
			out[i] = r
			continue
		}
		headers := make([]*logv1.Header, 0, len(r.GetHeaders())+2)
		headers = append(headers, r.GetHeaders()...)
		headers = append(headers, &logv1.Header{Key: TraceparentHeader, Value: []byte(tp)})
		if ts != "" {
			headers = append(headers, &logv1.Header{Key: TracestateHeader, Value: []byte(ts)})
		}
		out[i] = &logv1.Record{Value: r.GetValue(), Key: r.GetKey(), Headers: headers}
	}
	return out
}

func hasHeader(r *logv1.Record, key string) bool {
	for _, h := range r.GetHeaders() {
		if h.GetKey() == key {
			return true
		}
	}
	return false
}

// RecordSpanContext returns the trace context a producer stored in a
// record's headers (Config.TraceHeaders, or any producer that writes a W3C
// traceparent header), marked remote; it is not valid when the record
// carries none. A consumer links to it rather than continue the trace:
//
//	ctx, span := tracer.Start(ctx, "process", trace.WithLinks(trace.Link{SpanContext: client.RecordSpanContext(rec)}))
func RecordSpanContext(r *logv1.Record) trace.SpanContext {
	carrier := propagation.MapCarrier{}
	for _, h := range r.GetHeaders() {
		switch k := h.GetKey(); k {
		case TraceparentHeader, TracestateHeader:
			if _, ok := carrier[k]; !ok {
				carrier[k] = string(h.GetValue())
			}
		}
	}
	if carrier[TraceparentHeader] == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), carrier))
}

// RecordLink is the link to the producer's span of a record
// (RecordSpanContext); ok is false when the record carries no trace
// context.
func RecordLink(r *logv1.Record) (link trace.Link, ok bool) {
	sc := RecordSpanContext(r)
	return trace.Link{SpanContext: sc}, sc.IsValid()
}
