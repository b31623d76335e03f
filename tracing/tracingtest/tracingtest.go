// Package tracingtest is a real OTLP trace receiver for tests: an HTTP
// server on 127.0.0.1 that decodes OTLP/HTTP protobuf export requests and
// a gRPC server implementing the OTLP TraceService, both keeping every
// span they are sent.
package tracingtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one received span and the resource it came from.
type Span struct {
	*tracepb.Span
	// Service and Instance are the resource's service.name and
	// service.instance.id.
	Service, Instance string
	// Via is "http" or "grpc": how it arrived.
	Via string
}

// TraceID and SpanID are the span's ids in hex; ParentID is "" for a root.
func (s Span) TraceID() string  { return hex.EncodeToString(s.Span.GetTraceId()) }
func (s Span) SpanID() string   { return hex.EncodeToString(s.Span.GetSpanId()) }
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.GetParentSpanId()) }

// Attr returns the string form of the span's attribute key ("" if absent).
func (s Span) Attr(key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return anyString(kv.GetValue())
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}

// HasEvent reports whether the span has an event called name.
func (s Span) HasEvent(name string) bool {
	return slices.ContainsFunc(s.GetEvents(), func(e *tracepb.Span_Event) bool { return e.GetName() == name })
}

func (s Span) String() string {
	return fmt.Sprintf("%s [%s] trace=%s span=%s parent=%s kind=%s", s.GetName(), s.Instance, s.TraceID(), s.SpanID(), s.ParentID(), s.GetKind())
}

// Receiver keeps the spans exported to it. Its servers stop when the test
// ends.
type Receiver struct {
	// HTTPURL is the OTLP/HTTP base URL (http://127.0.0.1:port), for
	// OTEL_EXPORTER_OTLP_ENDPOINT with protocol http/protobuf.
	HTTPURL string
	// GRPCURL is the OTLP/gRPC endpoint (http://127.0.0.1:port), for
	// OTEL_EXPORTER_OTLP_ENDPOINT with protocol grpc.
	GRPCURL string

	mu       sync.Mutex // guards spans and requests
	spans    []Span
	requests int
}

// NewReceiver starts both servers on loopback ports.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hln) }()
	r.HTTPURL = "http://" + hln.Addr().String()

	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcService{r: r})
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(gln) }()
	r.GRPCURL = "http://" + gln.Addr().String()

	t.Cleanup(func() {
		_ = hs.Close()
		gs.Stop()
		<-served
	})
	return r
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var er coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &er); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&er, "http")
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.add(req, "grpc")
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) add(req *coltracepb.ExportTraceServiceRequest, via string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	for _, rs := range req.GetResourceSpans() {
		var service, instance string
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.GetKey() {
			case "service.name":
				service = anyString(kv.GetValue())
			case "service.instance.id":
				instance = anyString(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, Span{Span: s, Service: service, Instance: instance, Via: via})
			}
		}
	}
}

// Spans returns every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Requests counts the export requests received.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Trace returns the spans of one trace (hex id).
func (r *Receiver) Trace(traceID string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID() == traceID {
			out = append(out, s)
		}
	}
	return out
}

// Dump describes spans one a line, for failure messages.
func Dump(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}
