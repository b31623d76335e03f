package service

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Forwarder sends appends a follower refuses to the leader; its Forward
// method is a Config.Forward. It keeps one client per leader address over
// one HTTP/2 connection pool, presenting the node's own certificate, and
// marks every request with ForwardedHeader so the leader accepts it from a
// peer without an ACL line (see peerForward).
type Forwarder struct {
	self      string // this node's advertised address: never forward to it
	transport *http.Transport
	header    connect.Interceptor

	mu      sync.Mutex // guards clients
	clients map[string]logv1connect.LogServiceClient
}

// maxForwardClients bounds the cache; a cluster has a handful of members,
// and a leader that moved for good leaves its entry behind.
const maxForwardClients = 64

// NewForwarder makes a Forwarder for the node nodeID reachable at self.
// tlsConfig must hold the node's server certificate (Certificates), which
// is valid for client authentication too, and the cluster's CA (RootCAs).
func NewForwarder(nodeID, self string, tlsConfig *tls.Config) (*Forwarder, error) {
	if tlsConfig == nil || len(tlsConfig.Certificates) == 0 || tlsConfig.RootCAs == nil {
		return nil, errors.New("service: a Forwarder needs the node's certificate and the cluster's CA")
	}
	if nodeID == "" {
		return nil, errors.New("service: a Forwarder needs the node ID")
	}
	cfg := tlsConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 5 * time.Second,
		Protocols:           &protocols,
		MaxIdleConnsPerHost: 4,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: pingInterval, PingTimeout: pingTimeout},
	}
	header := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(ForwardedHeader, nodeID)
			return next(ctx, req)
		}
	})
	return &Forwarder{self: self, transport: tr, header: header, clients: map[string]logv1connect.LogServiceClient{}}, nil
}

// Forward returns a client for the leader named by a *cluster.NotLeaderError.
// Other errors, an unknown leader, or a leader at this node's own address
// (a stale view) are not forwarded.
func (f *Forwarder) Forward(err error) (logv1connect.LogServiceClient, bool) {
	var nle *cluster.NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderAddr == "" || nle.LeaderAddr == f.self {
		return nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[nle.LeaderAddr]; ok {
		return c, true
	}
	if len(f.clients) >= maxForwardClients {
		clear(f.clients)
	}
	c := logv1connect.NewLogServiceClient(&http.Client{Transport: f.transport}, "https://"+nle.LeaderAddr,
		connect.WithInterceptors(f.header), connect.WithReadMaxBytes(DefaultMaxMessageBytes))
	f.clients[nle.LeaderAddr] = c
	return c, true
}

// Close drops the idle connections to leaders.
func (f *Forwarder) Close() { f.transport.CloseIdleConnections() }
