// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables, and takes it down again: New builds a Provider,
// Shutdown flushes the spans it still holds and stops its exporter.
//
// Tracing is off unless configured: without OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER=otlp (and
// always with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none) the
// Provider is a no-op: no exporter, no goroutine, and callers that ask
// Enabled install no instrumentation at all.
//
// What is read, and by whom:
//
//   - OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, and
//     OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
//     ("http/protobuf", the default, or "grpc"): here.
//   - OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT,
//     _COMPRESSION, _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY and
//     _INSECURE: the OTLP exporters (otlptracehttp, otlptracegrpc).
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on) and OTEL_BSP_*: the SDK's tracer provider
//     and batch span processor.
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: the resource, over
//     Config's service name, version and instance id.
//
// Trace context travels as W3C Trace Context (traceparent, tracestate):
// Propagator is what every Connect interceptor and record header uses,
// whatever OTEL_PROPAGATORS says.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The protocols OTEL_EXPORTER_OTLP_PROTOCOL may name.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// DefaultServiceName is service.name unless Config or OTEL_SERVICE_NAME
// says otherwise.
const DefaultServiceName = "proglog"

// ErrConfig wraps every refusal of the OTEL_* settings.
var ErrConfig = errors.New("tracing: bad configuration")

// Config describes the process being traced. The exporter, sampler and
// endpoint come from the environment (see the package documentation).
type Config struct {
	// ServiceName is service.name; default DefaultServiceName.
	// OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// ServiceVersion is service.version, and InstanceID
	// service.instance.id (a node's ID); empty ones are left out.
	ServiceVersion, InstanceID string
	// Logger is told what New set up; nil discards it.
	Logger *slog.Logger
}

// Provider is a tracer provider and what it needs to stop: an OTLP
// exporter behind a batch span processor, or nothing (a no-op).
type Provider struct {
	tp  trace.TracerProvider
	sdk *sdktrace.TracerProvider // nil when off
}

// Propagator is the W3C Trace Context propagator (traceparent,
// tracestate) that proglog's interceptors and record headers use.
var propagator = propagation.TraceContext{}

// Propagator returns the W3C Trace Context propagator.
func Propagator() propagation.TextMapPropagator { return propagator }

// Off returns a Provider that traces nothing.
func Off() *Provider { return &Provider{tp: noop.NewTracerProvider()} }

// New reads the OTEL_* environment and returns the Provider it asks for:
// a no-op one unless an OTLP exporter is configured (see the package
// documentation). It fails with ErrConfig on settings it cannot honour
// (an unknown exporter or protocol) rather than run without the traces
// the operator asked for.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	on, protocol, err := fromEnv()
	if err != nil || !on {
		return Off(), err
	}
	var exp sdktrace.SpanExporter
	switch protocol {
	case ProtocolHTTP:
		exp, err = otlptracehttp.New(ctx)
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", protocol, err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	if cfg.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.InstanceID))
	}
	// Later options win: the environment overrides Config.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...), resource.WithFromEnv())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	logger.Info("tracing: exporting spans over OTLP", slog.String("protocol", protocol),
		slog.String("endpoint", endpoint(protocol)), slog.String("sampler", sampler()))
	return &Provider{tp: sdk, sdk: sdk}, nil
}

// fromEnv decides from the environment whether to export spans, and with
// which protocol.
func fromEnv() (on bool, protocol string, err error) {
	if v := strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return false, "", nil
	}
	switch exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); exporter {
	case "none":
		return false, "", nil
	case "otlp":
		on = true
	case "":
		on = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return false, "", fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", ErrConfig, exporter)
	}
	if !on {
		return false, "", nil
	}
	protocol = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if protocol == "" {
		protocol = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch protocol {
	case "":
		protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return false, "", fmt.Errorf("%w: OTLP protocol %q: want %s or %s", ErrConfig, protocol, ProtocolHTTP, ProtocolGRPC)
	}
	return true, protocol, nil
}

// endpoint is where the exporter sends spans, for the log line.
func endpoint(protocol string) string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	if v := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		if protocol == ProtocolHTTP {
			return strings.TrimRight(v, "/") + "/v1/traces"
		}
		return v
	}
	if protocol == ProtocolGRPC {
		return "localhost:4317"
	}
	return "http://localhost:4318/v1/traces"
}

func sampler() string {
	if v := os.Getenv("OTEL_TRACES_SAMPLER"); v != "" {
		if arg := os.Getenv("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
			return v + "=" + arg
		}
		return v
	}
	return "parentbased_always_on"
}

// Enabled says whether spans are exported. Instrumentation that costs
// anything is installed only when they are.
func (p *Provider) Enabled() bool { return p != nil && p.sdk != nil }

// TracerProvider is the provider to start spans with; a no-op one when
// tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return noop.NewTracerProvider()
	}
	return p.tp
}

// Shutdown exports the spans still buffered and stops the exporter, until
// ctx ends. Spans started after it are dropped. A no-op Provider has
// nothing to do.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
