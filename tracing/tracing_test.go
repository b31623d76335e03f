package tracing_test

import (
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/proglog/proglog/tracing"
	"github.com/proglog/proglog/tracing/tracingtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clearEnv unsets every OTEL_* variable these tests depend on.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	} {
		t.Setenv(k, "")
	}
}

func TestOffUnlessConfigured(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"protocol alone", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p, err := tracing.New(t.Context(), tracing.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Enabled() {
				t.Fatal("tracing is on")
			}
			_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "x")
			if span.IsRecording() {
				t.Error("a span of the no-op provider records")
			}
			span.End()
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRefusesWhatItCannotHonour(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"http/json", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}},
		{"zipkin", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if _, err := tracing.New(t.Context(), tracing.Config{}); !errors.Is(err, tracing.ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
		})
	}
}

// TestExports sends a span over each protocol to a real receiver, and
// Shutdown flushes it.
func TestExports(t *testing.T) {
	recv := tracingtest.NewReceiver(t)
	cases := []struct {
		via string
		env map[string]string
	}{
		{"http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.HTTPURL}},
		{"http", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv.HTTPURL + "/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.GRPCURL, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv.GRPCURL, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "renamed"}},
	}
	for i, tc := range cases {
		t.Run(tc.via, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p, err := tracing.New(t.Context(), tracing.Config{ServiceVersion: "v-test", InstanceID: "n1"})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Enabled() {
				t.Fatal("tracing is off")
			}
			_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "case")
			want := span.SpanContext().TraceID().String()
			span.End()
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := recv.Trace(want)
			if len(got) != 1 {
				t.Fatalf("case %d: %d spans of trace %s received, want 1:\n%s", i, len(got), want, tracingtest.Dump(recv.Spans()))
			}
			s := got[0]
			wantService := "proglog"
			if tc.env["OTEL_SERVICE_NAME"] != "" {
				wantService = tc.env["OTEL_SERVICE_NAME"]
			}
			if s.Via != tc.via || s.Service != wantService || s.Instance != "n1" || s.GetName() != "case" {
				t.Errorf("case %d: got %s via %s service %q, want via %s service %q", i, s, s.Via, s.Service, tc.via, wantService)
			}
		})
	}
}
