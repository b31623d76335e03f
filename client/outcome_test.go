package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/pki/pkitest"
	"github.com/proglog/proglog/service"
)

// The client decides on the details real servers send, over every
// protocol: what it retries, what it reports as ErrUnknownOutcome, and
// which OutOfRange answers are "past the end".

// followerLog is a real log that refuses appends as a cluster follower
// does, naming the leader at leaderAddr ("" for none known).
type followerLog struct {
	*logstore.Log
	leaderAddr string
}

func (f followerLog) err() error {
	if f.leaderAddr == "" {
		return &cluster.NotLeaderError{}
	}
	return &cluster.NotLeaderError{LeaderID: "leader", LeaderAddr: f.leaderAddr}
}

func (f followerLog) AppendRecords(context.Context, []logstore.Record) (uint64, error) {
	return 0, f.err()
}

// testServer is one service on its own TLS port.
type testServer struct {
	addr string
	log  *logstore.Log
}

// serverOptions shape a testServer: leaderAddr makes it a follower of that
// address ("-" for one that knows no leader); wrap wraps its handler.
type serverOptions struct {
	maxRecordBytes int
	leaderAddr     string
	wrap           func(http.Handler) http.Handler
}

func startServer(t *testing.T, ca *pkitest.CA, opts serverOptions) *testServer {
	t.Helper()
	lcfg := logstore.DefaultConfig()
	lcfg.MaxSegmentBytes = 4096
	log, err := logstore.Open(filepath.Join(t.TempDir(), "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := ca.Issue(t, "node", true)
	tlsCfg, err := pki.ServerTLSConfig(certFile, keyFile, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := acl.Parse(strings.NewReader("p, root, *, *\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := service.Config{
		Log:            log,
		Authorizer:     policy,
		NodeID:         "node",
		Version:        "test",
		RPCAddr:        ln.Addr().String(),
		MaxRecordBytes: opts.maxRecordBytes,
	}
	if opts.leaderAddr != "" {
		leader := strings.TrimPrefix(opts.leaderAddr, "-")
		cfg.Log = followerLog{Log: log, leaderAddr: leader}
		fwd, err := service.NewForwarder("node", cfg.RPCAddr, ca.TLSConfig(t, certFile, keyFile))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fwd.Close)
		cfg.Forward = fwd.Forward
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = svc.Handler()
	if opts.wrap != nil {
		h = opts.wrap(h)
	}
	srv := service.NewServer(service.ServerConfig{Handler: h, TLS: tlsCfg})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
		if err := log.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{addr: ln.Addr().String(), log: log}
}

// abortProduces serves produces in full (the records are appended) and then
// resets the stream instead of answering: a leader that dies right after
// committing.
func abortProduces(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/log.v1.LogService/Produce") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		panic(http.ErrAbortHandler)
	})
}

// rootClient calls s as root with the client's own transport.
func rootClient(t *testing.T, ca *pkitest.CA, s *testServer, opts ...connect.ClientOption) logv1connect.LogServiceClient {
	t.Helper()
	certFile, keyFile := ca.Issue(t, "root", false)
	tr := newTransport(Config{TLS: ca.TLSConfig(t, certFile, keyFile)})
	t.Cleanup(tr.CloseIdleConnections)
	return logv1connect.NewLogServiceClient(&http.Client{Transport: tr}, "https://"+s.addr, opts...)
}

var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
}

func TestClassifyServerAnswers(t *testing.T) {
	ca := pkitest.NewCA(t)
	strict := startServer(t, ca, serverOptions{maxRecordBytes: 16})
	noLeader := startServer(t, ca, serverOptions{leaderAddr: "-"})
	stale := startServer(t, ca, serverOptions{leaderAddr: "127.0.0.1:1"})
	viaStale := startServer(t, ca, serverOptions{leaderAddr: stale.addr})
	aborting := startServer(t, ca, serverOptions{wrap: abortProduces})
	viaAborting := startServer(t, ca, serverOptions{leaderAddr: aborting.addr})

	for _, proto := range protocols {
		for _, tt := range []struct {
			name   string
			server *testServer
			value  string
			want   verdict
		}{
			{"record too large", strict, strings.Repeat("x", 17), final},
			{"no leader known", noLeader, "x", retry},
			{"the leader no longer leads", viaStale, "x", retry},
			{"the leader's connection breaks", viaAborting, "x", unknown},
		} {
			c := rootClient(t, ca, tt.server, proto.opts...)
			for _, call := range []struct {
				name string
				do   func(context.Context) error
			}{
				{"Produce", func(ctx context.Context) error {
					_, err := c.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(tt.value)}})
					return err
				}},
				{"ProduceBatch", func(ctx context.Context) error {
					_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{{Value: []byte(tt.value)}}})
					return err
				}},
			} {
				t.Run(fmt.Sprintf("%s/%s/%s", proto.name, tt.name, call.name), func(t *testing.T) {
					err := call.do(t.Context())
					if err == nil {
						t.Fatal("the append succeeded")
					}
					if got := classifyAppend(t.Context(), err); got != tt.want {
						t.Fatalf("classifyAppend(%v) = %v, want %v", err, got, tt.want)
					}
				})
			}
		}
	}

	// Reads: past the end is retried elsewhere; below the lowest retained
	// offset is final.
	log := strict.log
	for i := range 12 {
		if _, err := log.Append(t.Context(), []byte(strings.Repeat(fmt.Sprint(i), 1000))); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.TruncateBefore(10); err != nil {
		t.Fatal(err)
	}
	lowest, next := log.Bounds()
	if lowest == 0 {
		t.Fatal("nothing was truncated")
	}
	for _, proto := range protocols {
		c := rootClient(t, ca, strict, proto.opts...)
		consume := func(ctx context.Context, offset uint64) error {
			_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: offset})
			return err
		}
		tail := func(ctx context.Context, offset uint64) error {
			stream, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: offset})
			if err != nil {
				return err
			}
			defer stream.Close()
			if stream.Receive() {
				return fmt.Errorf("got %v, want an error", stream.Msg())
			}
			return stream.Err()
		}
		for _, tt := range []struct {
			name    string
			read    func(context.Context, uint64) error
			offset  uint64
			pastEnd bool
		}{
			{"Consume at the end", consume, next, true},
			{"Consume past the end", consume, next + 5, true},
			{"Consume below the lowest", consume, lowest - 1, false},
			{"ConsumeStream past the end", tail, next + 1, true},
			{"ConsumeStream below the lowest", tail, 0, false},
		} {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				err := tt.read(t.Context(), tt.offset)
				if connect.CodeOf(err) != connect.CodeOutOfRange {
					t.Fatalf("got %v, want OutOfRange", err)
				}
				if got := pastEnd(err, tt.offset); got != tt.pastEnd {
					t.Fatalf("pastEnd(%v, %d) = %v, want %v", err, tt.offset, got, tt.pastEnd)
				}
				want := final
				if tt.pastEnd {
					want = retry
				}
				if got := classifyReadAt(t.Context(), err, tt.offset); got != want {
					t.Fatalf("classifyReadAt = %v, want %v", got, want)
				}
			})
		}
	}
}
