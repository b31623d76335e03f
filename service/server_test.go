package service_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/protobuf/encoding/protowire"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
)

// Another protocol shares the TLS port by ALPN (as Raft will), beside
// HTTP/2 and HTTP/1.1; its connections end when Shutdown calls OnShutdown.
func TestHandoffByALPN(t *testing.T) {
	const proto = "proglog-echo"
	var (
		mu      sync.Mutex // guards conns and peers
		conns   []*tls.Conn
		peers   []string
		handled sync.WaitGroup
	)
	echo := func(conn *tls.Conn) {
		handled.Add(1)
		defer handled.Done()
		mu.Lock()
		conns = append(conns, conn)
		if chains := conn.ConnectionState().VerifiedChains; len(chains) > 0 {
			peers = append(peers, chains[0][0].Subject.CommonName)
		}
		mu.Unlock()
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := conn.Write([]byte(line)); err != nil {
				return
			}
		}
	}
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.Handoffs = map[string]func(*tls.Conn){proto: echo}
		c.OnShutdown = closeAll
	}})

	cfg, err := pki.ClientTLSConfig(e.cert("ca"), e.cert(idRoot), e.cert(idRoot+"-key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{proto}
	cfg.ServerName = "127.0.0.1"
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(t.Context(), "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("negotiated %q", got)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	mu.Lock()
	if len(peers) != 1 || peers[0] != idRoot {
		t.Fatalf("handoff saw verified peers %v", peers)
	}
	mu.Unlock()

	// HTTP/2 RPCs work on the same port, over every protocol.
	for _, p := range protocols {
		if _, err := e.client(idRoot, p.opts...).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("h2")}); err != nil {
			t.Fatalf("%s beside the handoff: %v", p.name, err)
		}
	}

	e.stop()
	handled.Wait()
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("handed-off connection still open after Shutdown")
	}
}

func TestGetServersFromNodes(t *testing.T) {
	nodes := []service.Node{{ID: "a", RPCAddr: "10.0.0.1:8400"}, {ID: "b", RPCAddr: "10.0.0.2:8400", IsLeader: true, PartitionLeaders: 7}}
	var fail atomic.Bool
	e := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Nodes = func() ([]service.Node, error) {
			if fail.Load() {
				return nil, errors.New("no configuration")
			}
			return nodes, nil
		}
	}})
	client := e.client(idReader)
	resp, err := client.GetServers(t.Context(), &logv1.GetServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetServers()
	if len(got) != 2 || got[0].GetId() != "a" || got[0].GetIsLeader() || got[1].GetRpcAddr() != "10.0.0.2:8400" || !got[1].GetIsLeader() ||
		got[0].GetPartitionLeaders() != 0 || got[1].GetPartitionLeaders() != 7 {
		t.Fatalf("GetServers: %v", got)
	}
	fail.Store(true)
	if _, err := client.GetServers(t.Context(), &logv1.GetServersRequest{}); codeOf(err) != connect.CodeInternal {
		t.Fatalf("failing Nodes: %v", err)
	}
}

// errNotLeader stands for a replicated log's "another node leads".
var errNotLeader = errors.New("not the leader")

// followerLog is a real log that refuses appends as a follower would,
// except for values starting with "broken", which fail as a broken disk.
type followerLog struct{ *logstore.Log }

func (f followerLog) refuse(values ...[]byte) error {
	for _, v := range values {
		if bytes.HasPrefix(v, []byte("broken")) {
			return fmt.Errorf("%w: injected", logstore.ErrFailed)
		}
	}
	return errNotLeader
}

func (f followerLog) AppendRecords(_ context.Context, recs []logstore.Record) (uint64, error) {
	vs := make([][]byte, len(recs))
	for i := range recs {
		vs[i] = recs[i].Value
	}
	return 0, f.refuse(vs...)
}

// A follower forwards appends to the leader through Config.Forward and
// answers with the leader's offsets; other errors are not forwarded, and
// the leader's refusals come back as they are.
func TestForwardToLeader(t *testing.T) {
	leader := newEnv(t, envOptions{})
	produceN(t, leader.client(idRoot), "pre", 3) // so leader offsets differ from the follower's
	var asReader atomic.Bool
	follower := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = followerLog{c.Log.(*logstore.Log)}
		c.Forward = func(err error) (logv1connect.LogServiceClient, bool) {
			if !errors.Is(err, errNotLeader) {
				return nil, false
			}
			if asReader.Load() {
				return leader.client(idReader), true
			}
			return leader.client(idRoot), true
		}
	}})
	ctx := t.Context()
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			client := follower.client(idRoot, proto.opts...)
			_, next := leader.log.Bounds()
			p, err := client.Produce(ctx, &logv1.ProduceRequest{Record: rec("one")})
			if err != nil || p.GetOffset() != next {
				t.Fatalf("Produce: %v, %v; want offset %d", p, err, next)
			}
			b, err := client.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{rec("two"), rec("three")}})
			if err != nil || b.GetBaseOffset() != next+1 || b.GetCount() != 2 {
				t.Fatalf("ProduceBatch: %v, %v", b, err)
			}
			stream, err := client.ProduceStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []*logv1.ProduceStreamRequest{{Record: rec("four")}, {Records: []*logv1.Record{rec("five"), rec("six")}}} {
				if err := stream.Send(r); err != nil {
					t.Fatal(err)
				}
			}
			_ = stream.CloseRequest()
			for i, want := range []uint64{next + 3, next + 4} {
				ack, err := stream.Receive()
				if err != nil || ack.GetOffset() != want {
					t.Fatalf("ack %d: %v, %v; want %d", i, ack, err, want)
				}
			}
			if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
				t.Fatalf("stream end: %v", err)
			}
			_ = stream.CloseResponse()
			for i, want := range []string{"one", "two", "three", "four", "five", "six"} {
				got, err := leader.log.Read(context.Background(), next+uint64(i))
				if err != nil || string(got.Value) != want {
					t.Fatalf("leader offset %d: %q, %v; want %q", next+uint64(i), got.Value, err, want)
				}
			}
			if _, fnext := follower.log.Bounds(); fnext != 0 {
				t.Fatalf("the follower's own log grew to %d", fnext)
			}
		})
	}

	client := follower.client(idRoot)
	if _, err := client.Produce(ctx, &logv1.ProduceRequest{Record: rec("broken disk")}); codeOf(err) != connect.CodeUnavailable {
		t.Fatalf("a failed log is not forwarded: got %v", err)
	}
	asReader.Store(true)
	if _, err := client.Produce(ctx, &logv1.ProduceRequest{Record: rec("refused")}); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("the leader's refusal: got %v", err)
	}
}

// A health watcher (a load balancer draining the node) sees NOT_SERVING
// when the service is told, and Shutdown ends its stream.
func TestHealthWatchAcrossShutdown(t *testing.T) {
	e := newEnv(t, envOptions{})
	health := grpchealth.NewClient(e.httpClient(idNone, false, nil), e.url, connect.WithGRPC())
	events := health.Watch(t.Context(), &grpchealth.CheckRequest{Service: logv1connect.LogServiceName})
	if ev := <-events; ev.Err != nil || ev.Response.Status != grpchealth.StatusServing {
		t.Fatalf("first event: %+v", ev)
	}
	e.svc.SetServing(false)
	if ev := <-events; ev.Err != nil || ev.Response.Status != grpchealth.StatusNotServing {
		t.Fatalf("after SetServing(false): %+v", ev)
	}
	e.stop() // fails the test if the watch holds Shutdown to its deadline
	for range events {
	}
}

// The open health check does not buffer large requests for anyone.
func TestHealthRequestLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	client := connect.NewClient[[]byte, []byte](e.httpClient(idNone, false, nil), e.url+"/grpc.health.v1.Health/Check",
		connect.WithGRPC(), connect.WithCodec(rawCodec{}))
	// A CheckRequest whose service name is 1 MiB long.
	big := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), strings.Repeat("x", 1<<20))
	if _, err := client.CallUnary(t.Context(), connect.NewRequest(&big)); codeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("1 MiB health check: code %v, want resource_exhausted", codeOf(err))
	}
	small := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "")
	if _, err := client.CallUnary(t.Context(), connect.NewRequest(&small)); err != nil {
		t.Fatalf("small health check: %v", err)
	}
}

// WhoAmI is open to anyone, so its requests are capped small too.
func TestOpenRPCRequestLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, proto := range protocols {
		opts := append([]connect.ClientOption{connect.WithCodec(rawCodec{})}, proto.opts...)
		client := connect.NewClient[[]byte, []byte](e.httpClient(idNone, false, nil), e.url+logv1connect.LogServiceWhoAmIProcedure, opts...)
		// A WhoAmIRequest with a 1 MiB unknown field.
		big := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), make([]byte, 1<<20))
		if _, err := client.CallUnary(t.Context(), connect.NewRequest(&big)); codeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("%s: 1 MiB WhoAmI: code %v, want resource_exhausted", proto.name, codeOf(err))
		}
		small := []byte{}
		if _, err := client.CallUnary(t.Context(), connect.NewRequest(&small)); err != nil {
			t.Fatalf("%s: WhoAmI: %v", proto.name, err)
		}
	}
}
