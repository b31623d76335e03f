package main

import (
	"strings"
	"testing"

	"github.com/proglog/proglog/tracing/tracingtest"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT set, a client command's calls are
// client spans of the service proglog-cli, exported before it exits.
func TestClientCommandTraces(t *testing.T) {
	recv := tracingtest.NewReceiver(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.HTTPURL)
	n := startTestNode(t, "p, anonymous, *, *\n")
	if _, stderr, code := n.cli(t.Context(), "", "produce", "traced"); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	var calls []string
	for _, s := range recv.Spans() {
		if s.Service == "proglog-cli" && s.GetKind().String() == "SPAN_KIND_CLIENT" && strings.HasPrefix(s.GetName(), "log.v1.LogService/") {
			calls = append(calls, s.GetName())
		}
	}
	if len(calls) == 0 {
		t.Fatalf("no client span of proglog-cli received:\n%s", tracingtest.Dump(recv.Spans()))
	}
}
