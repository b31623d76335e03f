package service_test

import (
	"context"
	"log/slog"
	"testing"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// memTracing is a tracer provider that hands every ended span to an
// in-memory exporter at once.
func memTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// withTraceparent sends a fixed W3C traceparent header on every call, as
// the dashboard does, whatever the protocol.
func withTraceparent(value string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("traceparent", value)
			return next(ctx, req)
		}
	}))
}

// A produce sent to a follower with a traceparent, over each protocol,
// makes one trace: the follower's server span (the caller's span its
// parent), the Forwarder's client span under it, and the leader's server
// span under that.
func TestTraceForwardedProduce(t *testing.T) {
	tp, exp := memTracing(t)
	leader := newEnv(t, envOptions{config: func(c *service.Config) { c.TracerProvider = tp }})
	fwd, err := service.NewForwarder("follower", "127.0.0.1:1", nodeTLS(t, leader), service.WithForwardTracing(tp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	follower := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: leader.addr}
		c.Forward = fwd.Forward
		c.TracerProvider = tp
	}})
	const (
		traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan = "00f067aa0ba902b7"
	)
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			exp.Reset()
			opts := append([]connect.ClientOption{withTraceparent("00-" + traceID + "-" + callerSpan + "-01")}, proto.opts...)
			if _, err := follower.client(idRoot, opts...).Produce(t.Context(), &logv1.ProduceRequest{Record: rec(proto.name)}); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			find := func(kind trace.SpanKind, parent string) tracetest.SpanStub {
				t.Helper()
				for _, s := range spans {
					if s.SpanKind == kind && s.Parent.SpanID().String() == parent && s.Name == "log.v1.LogService/Produce" {
						if s.SpanContext.TraceID().String() != traceID {
							t.Fatalf("span %s in trace %s, want %s", s.Name, s.SpanContext.TraceID(), traceID)
						}
						return s
					}
				}
				t.Fatalf("no %v Produce span under %s among %d spans: %+v", kind, parent, len(spans), names(spans))
				return tracetest.SpanStub{}
			}
			onFollower := find(trace.SpanKindServer, callerSpan)
			forwarding := find(trace.SpanKindClient, onFollower.SpanContext.SpanID().String())
			onLeader := find(trace.SpanKindServer, forwarding.SpanContext.SpanID().String())
			if got := attr(onFollower, "proglog.forwarded"); got != "true" {
				t.Errorf("follower's span: proglog.forwarded %q", got)
			}
			if got := attr(onLeader, "proglog.topic"); got != "default" {
				t.Errorf("leader's span: proglog.topic %q", got)
			}
			// otelconnect's conventions: gRPC and gRPC-Web are "grpc".
			want := map[string]string{"connect": "connectrpc", "grpc": "grpc", "grpcweb": "grpc"}[proto.name]
			if got := attr(onFollower, "rpc.system.name"); got != want {
				t.Errorf("follower's span: rpc.system.name %q, want %q: %v", got, want, onFollower.Attributes)
			}
			if got := attr(onLeader, "rpc.method"); got != "log.v1.LogService/Produce" {
				t.Errorf("leader's span: rpc.method %q", got)
			}
		})
	}
}

// A Consume without a traceparent starts a trace of its own with a read
// span under it, and its debug log line names the trace.
func TestTraceConsume(t *testing.T) {
	tp, exp := memTracing(t)
	var logs syncBuffer
	e := newEnv(t, envOptions{config: func(c *service.Config) {
		c.TracerProvider = tp
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	produceN(t, e.client(idRoot), "r", 1)
	exp.Reset()
	if _, err := e.client(idRoot).Consume(t.Context(), &logv1.ConsumeRequest{}); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	var server, read tracetest.SpanStub
	for _, s := range spans {
		switch s.Name {
		case "log.v1.LogService/Consume":
			server = s
		case "proglog.read":
			read = s
		}
	}
	if !server.SpanContext.IsValid() || server.Parent.IsValid() || read.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Fatalf("want a root Consume span with a read span under it: %v", names(spans))
	}
	found := false
	for _, l := range logs.lines(t) {
		found = found || l["msg"] == "rpc" && l["trace_id"] == server.SpanContext.TraceID().String()
	}
	if !found {
		t.Fatalf("no rpc log line with trace_id %s: %v", server.SpanContext.TraceID(), logs.lines(t))
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"/"+s.SpanKind.String()+" "+s.SpanContext.SpanID().String()+"<-"+s.Parent.SpanID().String())
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
