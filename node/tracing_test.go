package node_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.uber.org/goleak"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/tracing"
	"github.com/proglog/proglog/tracing/tracingtest"
)

// otelEnv sets the OTEL_* variables tracing reads to env, unsetting the
// others.
func otelEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	} {
		t.Setenv(k, env[k])
	}
}

func traced(c *node.Config) { c.Tracing = &tracing.Config{} }

// A produce sent to a follower of a three-node cluster is one trace, sent
// to a real OTLP receiver over HTTP and over gRPC: the client's span, the
// follower's server span, its forwarding client span, the leader's server
// span, the leader's raft.apply and raft.fsync, each the child of the one
// before and on the node it says.
func TestTraceProduceThroughFollower(t *testing.T) {
	for _, protocol := range []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			recv := tracingtest.NewReceiver(t)
			endpoint := recv.HTTPURL
			if protocol == tracing.ProtocolGRPC {
				endpoint = recv.GRPCURL
			}
			otelEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
			nodes, _, clients, root := startThree(t, traced)

			// The caller traces too, as another service.
			tp, err := tracing.New(t.Context(), tracing.Config{ServiceName: "test-client"})
			if err != nil {
				t.Fatal(err)
			}
			leaderAt := -1
			for i, s := range servers(t, clients[0]) {
				if strings.HasSuffix(s, "*") {
					leaderAt = i
				}
			}
			if leaderAt < 0 {
				t.Fatal("no leader")
			}
			follower := nodes[(leaderAt+1)%3]
			otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp.TracerProvider()),
				otelconnect.WithPropagator(tracing.Propagator()), otelconnect.WithoutMetrics())
			if err != nil {
				t.Fatal(err)
			}
			_, hc, url := client(t, follower.Addr(), root)
			c := logv1connect.NewLogServiceClient(hc, url, connect.WithInterceptors(otel))
			if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("traced")}}); err != nil {
				t.Fatal(err)
			}
			if err := tp.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				if err := n.stop(t); err != nil { // flushes its spans
					t.Fatal(err)
				}
			}

			var caller tracingtest.Span
			for _, s := range recv.Spans() {
				if s.Service == "test-client" {
					caller = s
				}
			}
			if caller.Span == nil {
				t.Fatalf("no span from the client:\n%s", tracingtest.Dump(recv.Spans()))
			}
			trace := recv.Trace(caller.TraceID())
			leaderID, followerID := "n"+string(rune('1'+leaderAt)), "n"+string(rune('1'+(leaderAt+1)%3))
			parent := caller
			for _, want := range []struct{ name, node, kind string }{
				{"log.v1.LogService/Produce", followerID, "SPAN_KIND_SERVER"},
				{"log.v1.LogService/Produce", followerID, "SPAN_KIND_CLIENT"},
				{"log.v1.LogService/Produce", leaderID, "SPAN_KIND_SERVER"},
				{"raft.apply", leaderID, "SPAN_KIND_INTERNAL"},
				{"raft.fsync", leaderID, "SPAN_KIND_INTERNAL"},
			} {
				var child tracingtest.Span
				for _, s := range trace {
					if s.ParentID() == parent.SpanID() && s.GetName() == want.name && s.GetKind().String() == want.kind {
						child = s
					}
				}
				if child.Span == nil {
					t.Fatalf("no %s %s span on %s under %s in the trace:\n%s", want.kind, want.name, want.node, parent, tracingtest.Dump(trace))
				}
				if child.Instance != want.node || child.Service != "proglog" || child.Via != map[string]string{tracing.ProtocolHTTP: "http", tracing.ProtocolGRPC: "grpc"}[protocol] {
					t.Errorf("%s: from %s/%s via %s, want %s/proglog", child, child.Service, child.Instance, child.Via, want.node)
				}
				if want.name == "raft.apply" {
					for k, v := range map[string]string{"proglog.topic": "default", "proglog.partition": "0", "proglog.records": "1"} {
						if got := child.Attr(k); got != v {
							t.Errorf("raft.apply: %s = %q, want %q", k, got, v)
						}
					}
					if child.Attr("raft.index") == "" || child.Attr("proglog.bytes") == "" {
						t.Errorf("raft.apply lacks raft.index or proglog.bytes: %v", child.GetAttributes())
					}
				}
				parent = child
			}
		})
	}
}

// Without OTEL_* settings (or with OTEL_SDK_DISABLED) a node asked to
// trace exports nothing and leaves no exporter goroutine behind.
func TestTracingOffByDefault(t *testing.T) {
	recv := tracingtest.NewReceiver(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": recv.HTTPURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			otelEnv(t, tc.env)
			id := newIdentity(t)
			cfg := id.config(t, t.TempDir())
			traced(&cfg)
			n := start(t, cfg)
			c, hc, _ := client(t, n.Addr(), id.root)
			waitFor(t, "a leader", func() bool {
				_, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("x")}, Topic: "default"})
				return err == nil
			})
			if err := n.stop(t); err != nil {
				t.Fatal(err)
			}
			hc.Transport.(*http.Transport).CloseIdleConnections()
			time.Sleep(100 * time.Millisecond) // connections' goroutines end
		})
	}
	if n := recv.Requests(); n != 0 {
		t.Fatalf("%d export requests received", n)
	}
}
