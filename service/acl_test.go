package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// rpcCalls makes one call of each RPC; a nil error means the call was
// served.
var rpcCalls = []struct {
	name string
	call func(context.Context, logv1connect.LogServiceClient) error
}{
	{"Produce", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.Produce(ctx, &logv1.ProduceRequest{Record: rec("acl")})
		return err
	}},
	{"ProduceBatch", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{rec("acl")}})
		return err
	}},
	{"ProduceStream", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		s, err := c.ProduceStream(ctx)
		if err != nil {
			return err
		}
		defer s.CloseResponse()
		if err := s.Send(&logv1.ProduceStreamRequest{Record: rec("acl")}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if err := s.CloseRequest(); err != nil {
			return err
		}
		_, err = s.Receive()
		return err
	}},
	{"Consume", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: 0})
		return err
	}},
	{"ConsumeStream", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		s, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: 0})
		if err != nil {
			return err
		}
		defer s.Close()
		if !s.Receive() {
			if s.Err() == nil {
				return errors.New("stream ended without a record or an error")
			}
			return s.Err()
		}
		return nil
	}},
	{"GetServers", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.GetServers(ctx, &logv1.GetServersRequest{})
		return err
	}},
	{"GetStats", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.GetStats(ctx, &logv1.GetStatsRequest{})
		return err
	}},
	{"WhoAmI", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.WhoAmI(ctx, &logv1.WhoAmIRequest{})
		return err
	}},
	{"RemoveNode", func(ctx context.Context, c logv1connect.LogServiceClient) error {
		_, err := c.RemoveNode(ctx, &logv1.RemoveNodeRequest{NodeId: "n2"})
		return err
	}},
}

func TestACLMatrix(t *testing.T) {
	const (
		ok      = connect.Code(0)
		denied  = connect.CodePermissionDenied
		unauthn = connect.CodeUnauthenticated
	)
	e := newEnv(t, envOptions{})
	if _, err := e.client(idRoot).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("seed")}); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]connect.Code{
		idRoot: {"Produce": ok, "ProduceBatch": ok, "ProduceStream": ok, "Consume": ok, "ConsumeStream": ok,
			"GetServers": ok, "GetStats": ok, "WhoAmI": ok,
			"RemoveNode": connect.CodeUnimplemented}, // allowed, but a standalone node has no cluster
		idReader: {"Produce": denied, "ProduceBatch": denied, "ProduceStream": denied, "Consume": ok, "ConsumeStream": ok,
			"GetServers": ok, "GetStats": ok, "WhoAmI": ok, "RemoveNode": denied},
		idStranger: {"Produce": denied, "ProduceBatch": denied, "ProduceStream": denied, "Consume": denied, "ConsumeStream": denied,
			"GetServers": denied, "GetStats": denied, "WhoAmI": ok, "RemoveNode": denied},
		idNone: {"Produce": unauthn, "ProduceBatch": unauthn, "ProduceStream": unauthn, "Consume": unauthn, "ConsumeStream": unauthn,
			"GetServers": unauthn, "GetStats": unauthn, "WhoAmI": ok, "RemoveNode": unauthn},
	}
	for _, id := range []string{idRoot, idReader, idStranger, idNone, idImpostor} {
		for _, proto := range protocols {
			client := e.client(id, proto.opts...)
			for _, rpc := range rpcCalls {
				name := id
				if name == idNone {
					name = "no-cert"
				}
				t.Run(name+"/"+proto.name+"/"+rpc.name, func(t *testing.T) {
					_, before := e.log.Bounds()
					err := rpc.call(t.Context(), client)
					_, after := e.log.Bounds()
					if id == idImpostor {
						// A certificate that does not verify fails the TLS
						// handshake: nothing is served, not even WhoAmI.
						if err == nil || codeOf(err) == denied || codeOf(err) == unauthn {
							t.Fatalf("impostor: got %v, want a transport failure", err)
						}
						t.Logf("impostor: %v", err)
						if after != before {
							t.Fatal("impostor's call reached the log")
						}
						return
					}
					if got := codeOf(err); got != want[id][rpc.name] {
						t.Fatalf("got %v (%v), want %v", got, err, want[id][rpc.name])
					}
					if err != nil && codeOf(err) != connect.CodeUnimplemented {
						if after != before {
							t.Fatal("a refused call reached the log")
						}
						wantMsg := `subject "` + id + `" may not`
						if id == idNone {
							wantMsg = `subject "anonymous" may not`
						}
						var ce *connect.Error
						if !errors.As(err, &ce) || len(ce.Message()) < len(wantMsg) || ce.Message()[:len(wantMsg)] != wantMsg {
							t.Fatalf("message %q, want it to start with %q", err, wantMsg)
						}
					}
				})
			}
		}
	}
}

// WhoAmI names the subject and what it may do.
func TestWhoAmI(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tt := range []struct {
		id            string
		subject       string
		authenticated bool
		actions       []string
	}{
		{idRoot, "root", true, []string{"produce", "consume", "admin"}},
		{idReader, "reader", true, []string{"consume"}},
		{idStranger, "stranger", true, nil},
		{idNone, "anonymous", false, nil},
	} {
		who, err := e.client(tt.id).WhoAmI(t.Context(), &logv1.WhoAmIRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if who.GetSubject() != tt.subject || who.GetAuthenticated() != tt.authenticated || len(who.GetActions()) != len(tt.actions) {
			t.Fatalf("%q: %v", tt.id, who)
		}
		for i, a := range tt.actions {
			if who.GetActions()[i] != a {
				t.Fatalf("%q: actions %v, want %v", tt.id, who.GetActions(), tt.actions)
			}
		}
	}
}

// Refused calls to made-up paths share one metric label.
func TestRefusedPathsDoNotMintLabels(t *testing.T) {
	e := newEnv(t, envOptions{})
	hc := e.httpClient(idNone, false, nil)
	for i := range 5 {
		client := connect.NewClient[[]byte, []byte](hc, fmt.Sprintf("%s/grpc.reflection.v1.ServerReflection/Made%d", e.url, i),
			connect.WithGRPC(), connect.WithCodec(rawCodec{}))
		if _, err := client.CallUnary(t.Context(), connect.NewRequest(new([]byte))); codeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("got %v", err)
		}
	}
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "proglog_rpc_requests_total" {
			continue
		}
		if len(f.GetMetric()) != 1 || f.GetMetric()[0].GetCounter().GetValue() != 5 {
			t.Fatalf("refused calls counted as %v", f.GetMetric())
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			if l.GetName() == "procedure" && l.GetValue() != "other" {
				t.Fatalf("procedure label %q", l.GetValue())
			}
		}
		return
	}
	t.Fatal("no proglog_rpc_requests_total")
}

// Consume, GetStats, GetServers and WhoAmI have no side effects, so Connect
// clients may call them with cacheable GET requests; the ACL applies alike.
func TestHTTPGet(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.client(idRoot).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("get")}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id   string
		want connect.Code
	}{
		{idReader, 0},
		{idStranger, connect.CodePermissionDenied},
		{idNone, connect.CodeUnauthenticated},
	} {
		var method string
		client := e.client(tt.id, connect.WithHTTPGet(), connect.WithInterceptors(connect.UnaryInterceptorFunc(
			func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					resp, err := next(ctx, req)
					method = req.HTTPMethod()
					return resp, err
				}
			})))
		resp, err := client.Consume(t.Context(), &logv1.ConsumeRequest{Offset: 0})
		if codeOf(err) != tt.want {
			t.Fatalf("%q: %v, want %v", tt.id, err, tt.want)
		}
		if method != "GET" {
			t.Fatalf("%q: sent with %s", tt.id, method)
		}
		if tt.want == 0 && string(resp.GetRecord().GetValue()) != "get" {
			t.Fatalf("%q: %v", tt.id, resp)
		}
	}
}
