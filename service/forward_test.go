package service_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// notLeaderLog is a real log that refuses appends as a cluster follower
// does, naming the leader at leaderAddr ("" for none known).
type notLeaderLog struct {
	*logstore.Log
	leaderAddr string
}

func (n notLeaderLog) err() error {
	if n.leaderAddr == "" {
		return &cluster.NotLeaderError{}
	}
	return &cluster.NotLeaderError{LeaderID: "leader", LeaderAddr: n.leaderAddr}
}

func (n notLeaderLog) AppendRecords(context.Context, []logstore.Record) (uint64, error) {
	return 0, n.err()
}

// nodeTLS is what a node of leader's cluster dials peers with: a server
// certificate of the cluster's CA (the leader's own, here) and the CA.
func nodeTLS(t *testing.T, leader *env) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(leader.cert("server"), leader.cert("server-key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(leader.cert("ca"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func withForwardedHeader() connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(service.ForwardedHeader, "somebody")
			return next(ctx, req)
		}
	}))
}

// A follower forwards through a Forwarder with its node certificate; the
// leader's ACL has no line for the node ("server"), yet accepts the
// forwarded append, and only that.
func TestForwarderPeerProduce(t *testing.T) {
	leader := newEnv(t, envOptions{})
	produceN(t, leader.client(idRoot), "pre", 2)
	fwd, err := service.NewForwarder("follower", "127.0.0.1:1", nodeTLS(t, leader))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	follower := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: leader.addr}
		c.Forward = fwd.Forward
	}})
	ctx := t.Context()
	for _, proto := range protocols {
		client := follower.client(idRoot, proto.opts...)
		_, next := leader.log.Bounds()
		p, err := client.Produce(ctx, &logv1.ProduceRequest{Record: rec(proto.name)})
		if err != nil || p.GetOffset() != next {
			t.Fatalf("%s: forwarded Produce: %v, %v; want offset %d", proto.name, p, err, next)
		}
		got, err := leader.log.Read(context.Background(), next)
		if err != nil || string(got.Value) != proto.name {
			t.Fatalf("%s: leader has %q, %v", proto.name, got.Value, err)
		}
	}
	// The follower still checks its own caller.
	if _, err := follower.client(idReader).Produce(ctx, &logv1.ProduceRequest{Record: rec("x")}); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("reader through the follower: %v", err)
	}

	_, before := leader.log.Bounds()
	for _, tt := range []struct {
		name   string
		id     string
		header bool
		call   func(context.Context, *env, string, ...connect.ClientOption) error
		want   connect.Code
	}{
		{"node cert without header may not produce", "server", false, produce, connect.CodePermissionDenied},
		{"node cert with header may consume (to heal its copy)", "server", true, consume, 0},
		{"node cert without header may not consume", "server", false, consume, connect.CodePermissionDenied},
		{"reader cert with header gains nothing", idReader, true, produce, connect.CodePermissionDenied},
		{"stranger cert with header gains nothing", idStranger, true, produce, connect.CodePermissionDenied},
		{"anonymous with header gains nothing", idNone, true, produce, connect.CodeUnauthenticated},
		{"reader cert with header keeps its rights", idReader, true, consume, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []connect.ClientOption
			if tt.header {
				opts = append(opts, withForwardedHeader())
			}
			if err := tt.call(t.Context(), leader, tt.id, opts...); codeOf(err) != tt.want {
				t.Fatalf("got %v, want code %v", err, tt.want)
			}
		})
	}
	if _, next := leader.log.Bounds(); next != before {
		t.Fatalf("refused calls appended: next %d -> %d", before, next)
	}
}

func produce(ctx context.Context, e *env, id string, opts ...connect.ClientOption) error {
	_, err := e.client(id, opts...).Produce(ctx, &logv1.ProduceRequest{Record: rec("sneaky")})
	return err
}

func consume(ctx context.Context, e *env, id string, opts ...connect.ClientOption) error {
	_, err := e.client(id, opts...).Consume(ctx, &logv1.ConsumeRequest{Offset: 0})
	return err
}

// Appends are not forwarded twice (a forwarded request that reaches a
// follower), nor to the node itself, nor when no leader is known: the
// caller gets Unavailable and retries.
func TestForwarderRefusals(t *testing.T) {
	leader := newEnv(t, envOptions{})
	fwd, err := service.NewForwarder("b", "127.0.0.1:1", nodeTLS(t, leader))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	stale := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: leader.addr}
		c.Forward = fwd.Forward
	}})
	// A peer's forwarded append reaching a node that no longer leads is
	// not sent on. The peer uses a node certificate of stale's CA.
	if err := produce(t.Context(), stale, "server", withForwardedHeader()); codeOf(err) != connect.CodeUnavailable {
		t.Fatalf("second hop: got %v, want unavailable", err)
	}
	if _, next := leader.log.Bounds(); next != 0 {
		t.Fatalf("the second hop reached the leader: next %d", next)
	}

	for _, tt := range []struct {
		name string
		err  error
	}{
		{"no leader known", &cluster.NotLeaderError{}},
		{"leader is this node", &cluster.NotLeaderError{LeaderID: "b", LeaderAddr: "127.0.0.1:1"}},
		{"not a cluster error", logstore.ErrFailed},
	} {
		if c, ok := fwd.Forward(tt.err); ok || c != nil {
			t.Errorf("%s: forwarded", tt.name)
		}
	}
	a, ok1 := fwd.Forward(&cluster.NotLeaderError{LeaderID: "a", LeaderAddr: leader.addr})
	b, ok2 := fwd.Forward(&cluster.NotLeaderError{LeaderID: "a", LeaderAddr: leader.addr})
	if !ok1 || !ok2 || a != b {
		t.Fatal("the leader's client is not reused")
	}

	noLeader := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log)}
		c.Forward = fwd.Forward
	}})
	if err := produce(t.Context(), noLeader, idRoot); codeOf(err) != connect.CodeUnavailable {
		t.Fatalf("no leader: got %v, want unavailable", err)
	}

	// A leader that cannot be reached: nothing was sent, and the error says
	// so, in its message and in its AppendOutcome detail.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	unreachable := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: gone}
		c.Forward = fwd.Forward
	}})
	err = produce(t.Context(), unreachable, idRoot)
	if codeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("unreachable leader: got %v", err)
	}
	if got := appendOutcome(t, err); got != notApplied {
		t.Fatalf("unreachable leader: outcome %v in %v, want %v", got, err, notApplied)
	}

	if _, err := service.NewForwarder("x", "", &tls.Config{}); err == nil {
		t.Fatal("a Forwarder without a certificate was made")
	}
}
