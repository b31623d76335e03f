package service_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/encoding/protowire"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/service"
)

func rec(s string) *logv1.Record { return &logv1.Record{Value: []byte(s)} }

// exerciseAll runs every RPC through client and checks the results; the
// log starts empty.
func exerciseAll(t *testing.T, client logv1connect.LogServiceClient, rpcAddr string) {
	t.Helper()
	ctx := t.Context()

	p, err := client.Produce(ctx, &logv1.ProduceRequest{Record: rec("r0")})
	if err != nil || p.GetOffset() != 0 {
		t.Fatalf("Produce: offset %d, err %v", p.GetOffset(), err)
	}
	b, err := client.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{rec("r1"), rec("r2"), rec("r3")}})
	if err != nil || b.GetBaseOffset() != 1 || b.GetCount() != 3 {
		t.Fatalf("ProduceBatch: %v, err %v", b, err)
	}

	ps, err := client.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*logv1.ProduceStreamRequest{
		{Record: rec("r4")},
		{Records: []*logv1.Record{rec("r5"), rec("r6")}},
		{Record: rec("r7")},
	}
	for _, r := range reqs {
		if err := ps.Send(r); err != nil {
			t.Fatalf("ProduceStream send: %v", err)
		}
	}
	if err := ps.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	wantAcks := [][2]uint64{{4, 1}, {5, 2}, {7, 1}}
	for i, want := range wantAcks {
		ack, err := ps.Receive()
		if err != nil {
			t.Fatalf("ProduceStream ack %d: %v", i, err)
		}
		if ack.GetOffset() != want[0] || uint64(ack.GetCount()) != want[1] {
			t.Fatalf("ack %d: offset %d count %d, want %v", i, ack.GetOffset(), ack.GetCount(), want)
		}
	}
	if _, err := ps.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("ProduceStream end: %v", err)
	}
	if err := ps.CloseResponse(); err != nil {
		t.Fatal(err)
	}

	for off := range uint64(8) {
		c, err := client.Consume(ctx, &logv1.ConsumeRequest{Offset: off})
		if err != nil {
			t.Fatalf("Consume %d: %v", off, err)
		}
		if got, want := string(c.GetRecord().GetValue()), fmt.Sprintf("r%d", off); got != want || c.GetRecord().GetOffset() != off {
			t.Fatalf("Consume %d: %q at %d, want %q", off, got, c.GetRecord().GetOffset(), want)
		}
	}

	for _, maxBatch := range []uint32{0, 3} {
		cs, err := client.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: 2, MaxBatch: maxBatch})
		if err != nil {
			t.Fatal(err)
		}
		next := uint64(2)
		for next < 8 && cs.Receive() {
			msg := cs.Msg()
			got := msg.GetRecords()
			if maxBatch <= 1 {
				if len(got) != 0 || msg.GetRecord() == nil {
					t.Fatalf("max_batch %d: want one record per response, got %v", maxBatch, msg)
				}
				got = []*logv1.Record{msg.GetRecord()}
			} else if msg.GetRecord() != nil || len(got) == 0 || len(got) > int(maxBatch) {
				t.Fatalf("max_batch %d: got %d records (record %v)", maxBatch, len(got), msg.GetRecord())
			}
			for _, r := range got {
				if r.GetOffset() != next || string(r.GetValue()) != fmt.Sprintf("r%d", next) {
					t.Fatalf("ConsumeStream: got %q at %d, want offset %d", r.GetValue(), r.GetOffset(), next)
				}
				next++
			}
		}
		if next != 8 {
			t.Fatalf("ConsumeStream ended at %d: %v", next, cs.Err())
		}
		if err := cs.Close(); err != nil {
			t.Fatal(err)
		}
	}

	servers, err := client.GetServers(ctx, &logv1.GetServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s := servers.GetServers(); len(s) != 1 || s[0].GetId() != "node-1" || s[0].GetRpcAddr() != rpcAddr || !s[0].GetIsLeader() {
		t.Fatalf("GetServers: %v", s)
	}
	stats, err := client.GetStats(ctx, &logv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.GetLowestOffset() != 0 || stats.GetNextOffset() != 8 || stats.GetSegments() < 1 || stats.GetSizeBytes() == 0 ||
		stats.GetNodeId() != "node-1" || stats.GetVersion() != "test" {
		t.Fatalf("GetStats: %v", stats)
	}
}

func TestEveryRPCOverEveryProtocol(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		for _, proto := range protocols {
			name := proto.name
			if insecure {
				name += "/h2c"
			}
			t.Run(name, func(t *testing.T) {
				opts, id := envOptions{}, idRoot
				if insecure {
					// Without TLS everyone is anonymous; give anonymous the
					// rights this test needs.
					opts, id = envOptions{insecure: true, policy: "p, anonymous, *, produce\np, anonymous, *, consume\n"}, idNone
				}
				e := newEnv(t, opts)
				client := e.client(id, proto.opts...)
				exerciseAll(t, client, e.addr)

				who, err := client.WhoAmI(t.Context(), &logv1.WhoAmIRequest{})
				if err != nil {
					t.Fatal(err)
				}
				wantSubject, wantAuth, wantActions := "root", true, []string{"produce", "consume", "admin"}
				if insecure {
					wantSubject, wantAuth, wantActions = "anonymous", false, []string{"produce", "consume"}
				}
				if who.GetSubject() != wantSubject || who.GetAuthenticated() != wantAuth || !slices.Equal(who.GetActions(), wantActions) {
					t.Fatalf("WhoAmI: %v", who)
				}
			})
		}
	}
}

// Connect and gRPC-Web also work over HTTP/1.1 for unary and server
// streaming calls (what browsers without HTTP/2 use).
func TestHTTP1(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, proto := range protocols {
		if proto.name == "grpc" {
			continue // gRPC needs HTTP/2
		}
		t.Run(proto.name, func(t *testing.T) {
			client := logv1connect.NewLogServiceClient(e.httpClient(idRoot, true, nil), e.url, proto.opts...)
			p, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("h1")})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := client.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{Offset: p.GetOffset()})
			if err != nil {
				t.Fatal(err)
			}
			if !cs.Receive() || string(cs.Msg().GetRecord().GetValue()) != "h1" {
				t.Fatalf("ConsumeStream over HTTP/1.1: %v %v", cs.Msg(), cs.Err())
			}
			// Live: the tail waits at the end, then gets new records.
			if _, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("live")}); err != nil {
				t.Fatal(err)
			}
			if !cs.Receive() || string(cs.Msg().GetRecord().GetValue()) != "live" {
				t.Fatalf("live record over HTTP/1.1: %v %v", cs.Msg(), cs.Err())
			}
			if err := cs.Close(); err != nil {
				t.Fatal(err)
			}
			// A tail that starts at the end gets its headers at once.
			tail, err := client.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromEnd: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("after")}); err != nil {
				t.Fatal(err)
			}
			if !tail.Receive() || string(tail.Msg().GetRecord().GetValue()) != "after" {
				t.Fatalf("tail from the end over HTTP/1.1: %v %v", tail.Msg(), tail.Err())
			}
			if err := tail.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHealthAndReflection(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, id := range []string{idRoot, idNone} {
		health := grpchealth.NewClient(e.httpClient(id, false, nil), e.url, connect.WithGRPC())
		for _, svc := range []string{"", logv1connect.LogServiceName} {
			resp, err := health.Check(t.Context(), &grpchealth.CheckRequest{Service: svc})
			if err != nil || resp.Status != grpchealth.StatusServing {
				t.Fatalf("%q: health of %q: %v, %v", id, svc, resp, err)
			}
		}
	}
	e.svc.SetServing(false)
	health := grpchealth.NewClient(e.httpClient(idNone, false, nil), e.url, connect.WithGRPC())
	if resp, err := health.Check(t.Context(), &grpchealth.CheckRequest{Service: ""}); err != nil || resp.Status != grpchealth.StatusNotServing {
		t.Fatalf("after SetServing(false): %v, %v", resp, err)
	}

	for _, tt := range []struct {
		id   string
		want connect.Code
	}{
		{idRoot, 0},
		{idReader, connect.CodePermissionDenied},
		{idNone, connect.CodeUnauthenticated},
	} {
		got, err := listServicesV1Alpha(t, e.httpClient(tt.id, false, nil), e.url)
		if codeOf(err) != tt.want {
			t.Fatalf("v1alpha reflection as %q: %v, want code %v", tt.id, err, tt.want)
		}
		if tt.want == 0 && !bytes.Contains(got, []byte(logv1connect.LogServiceName)) {
			t.Fatalf("v1alpha reflection answered %q", got)
		}

		stream := grpcreflect.NewClient(e.httpClient(tt.id, false, nil), e.url, connect.WithGRPC()).NewStream(t.Context())
		names, err := stream.ListServices()
		if _, cerr := stream.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if codeOf(err) != tt.want {
			t.Fatalf("reflection as %q: %v, want code %v", tt.id, err, tt.want)
		}
		if tt.want == 0 && !slices.Contains(names, logv1connect.LogServiceName) {
			t.Fatalf("reflection lists %v", names)
		}
		if tt.want == 0 {
			stream := grpcreflect.NewClient(e.httpClient(tt.id, false, nil), e.url, connect.WithGRPC()).NewStream(t.Context())
			files, err := stream.FileContainingSymbol(logv1connect.LogServiceName)
			_, _ = stream.Close()
			if err != nil || len(files) == 0 {
				t.Fatalf("FileContainingSymbol: %v", err)
			}
		}
	}
}

// rawCodec sends and receives protobuf bytes as they are, for calls to
// services whose generated types this module lacks.
type rawCodec struct{}

func (rawCodec) Name() string                  { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}

// listServicesV1Alpha asks v1alpha reflection for its services (field 7 of
// ServerReflectionRequest, list_services) and returns the raw response.
func listServicesV1Alpha(t *testing.T, hc *http.Client, url string) ([]byte, error) {
	t.Helper()
	client := connect.NewClient[[]byte, []byte](hc, url+"/"+grpcreflect.ReflectV1AlphaServiceName+"/ServerReflectionInfo",
		connect.WithGRPC(), connect.WithCodec(rawCodec{}))
	stream := client.CallBidiStream(t.Context())
	req := protowire.AppendString(protowire.AppendTag(nil, 7, protowire.BytesType), "*")
	if err := stream.Send(&req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := stream.CloseRequest(); err != nil {
		return nil, err
	}
	resp, err := stream.Receive()
	if cerr := stream.CloseResponse(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return *resp, nil
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	client := e.client(idRoot)
	if _, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("m")}); err != nil {
		t.Fatal(err)
	}
	// A refused call is counted too.
	if _, err := e.client(idReader).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("m")}); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("reader Produce: %v", err)
	}
	for _, tt := range []struct {
		id   string
		want int
	}{
		{idRoot, http.StatusOK},
		{idReader, http.StatusForbidden},
		{idNone, http.StatusUnauthorized},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.httpClient(tt.id, false, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.want {
			t.Fatalf("%q: /metrics status %d, want %d", tt.id, resp.StatusCode, tt.want)
		}
		if tt.want != http.StatusOK {
			continue
		}
		for _, want := range []string{
			`proglog_rpc_requests_total{code="ok",procedure="/log.v1.LogService/Produce"} 1`,
			`proglog_rpc_requests_total{code="permission_denied",procedure="/log.v1.LogService/Produce"} 1`,
			`proglog_rpc_duration_seconds_count{code="ok",procedure="/log.v1.LogService/Produce"} 1`,
			"proglog_service_produced_records_total 1",
			"proglog_service_produced_bytes_total 1",
			"proglog_service_live_tails 0",
			"proglog_service_log_next_offset 1",
			"proglog_service_log_segments 1",
			"proglog_logstore_", // the log's own metrics are not registered here
		} {
			if want == "proglog_logstore_" {
				if bytes.Contains(body, []byte(want)) {
					t.Errorf("unexpected logstore metrics on a registry the log did not get")
				}
				continue
			}
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	}
}

// The dashboard is served at "/" to anyone, beside the RPC routes.
func TestDashboardMount(t *testing.T) {
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "dashboard "+r.URL.Path)
	})
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.Dashboard = dash }})
	for _, path := range []string{"/", "/assets/app.js"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.httpClient(idNone, false, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "dashboard "+path {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	if _, err := e.client(idNone).Consume(t.Context(), &logv1.ConsumeRequest{}); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("Consume beside the dashboard: %v", err)
	}
	if !strings.HasPrefix(e.url, "https://") {
		t.Fatal("expected TLS")
	}
}

// Responses are not gzipped unless Config.CompressMinBytes asks for it.
func TestResponseCompression(t *testing.T) {
	for _, tt := range []struct {
		min  int
		want string
	}{{0, ""}, {1, "gzip"}} {
		e := newEnv(t, envOptions{config: func(c *service.Config) { c.CompressMinBytes = tt.min }})
		if _, err := e.client(idRoot).Produce(t.Context(), &logv1.ProduceRequest{Record: rec(strings.Repeat("z", 512))}); err != nil {
			t.Fatal(err)
		}
		client := connect.NewClient[logv1.ConsumeRequest, logv1.ConsumeResponse](e.httpClient(idRoot, false, nil), e.url+logv1connect.LogServiceConsumeProcedure)
		resp, err := client.CallUnary(t.Context(), connect.NewRequest(&logv1.ConsumeRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header().Get("Content-Encoding"); got != tt.want {
			t.Errorf("CompressMinBytes %d: Content-Encoding %q, want %q", tt.min, got, tt.want)
		}
		if len(resp.Msg.GetRecord().GetValue()) != 512 {
			t.Errorf("CompressMinBytes %d: value of %d bytes", tt.min, len(resp.Msg.GetRecord().GetValue()))
		}
	}
}
