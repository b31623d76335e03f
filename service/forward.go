package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/pki"
)

// Forwarder sends requests to peer nodes: appends a follower refuses to the
// leader (its Forward method is a Config.Forward), and requests for
// partitions this node does not host (its Client method is a Config.Peer).
// It keeps one client per address over one HTTP/2 connection pool,
// presenting the node's own certificate, and marks every request, unary or
// streaming, with ForwardedHeader so the peer accepts it without an ACL
// line (see peerForward).
type Forwarder struct {
	self      string // this node's advertised address: never forward to it
	transport *http.Transport
	header    connect.Interceptor
	tracing   connect.Interceptor // nil: no spans (WithForwardTracing)

	mu      sync.Mutex // guards clients and relays
	clients map[string]logv1connect.LogServiceClient
	relays  map[string]logv1connect.LogServiceClient
}

// maxForwardClients bounds the cache; a cluster has a handful of members,
// and a leader that moved for good leaves its entry behind.
const maxForwardClients = 64

// NewForwarder makes a Forwarder for the node nodeID reachable at self.
// tlsConfig must hold the node's server certificate (Certificates), which
// is valid for client authentication too, and the cluster's CA (RootCAs).
func NewForwarder(nodeID, self string, tlsConfig *tls.Config, opts ...ForwarderOption) (*Forwarder, error) {
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
		// The dial and handshake net/http would make with cfg, but for
		// pki.WithServerName: a config that verifies peers against a
		// reloaded CA (pki.Reloader.DialConfig) learns the address so.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, pki.WithServerName(cfg, host))
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		},
		Protocols:           &protocols,
		MaxIdleConnsPerHost: 4,
		// Relayed consume streams arrive in frames of up to 256 KiB, as
		// they reach the client package's Client (client/client.go).
		HTTP2: &http.HTTP2Config{SendPingTimeout: pingInterval, PingTimeout: pingTimeout, MaxReadFrameSize: 256 << 10},
	}
	f := &Forwarder{self: self, transport: tr, header: headerMark{ForwardedHeader, nodeID}, clients: map[string]logv1connect.LogServiceClient{}, relays: map[string]logv1connect.LogServiceClient{}}
	for _, o := range opts {
		if err := o.applyForwarder(f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// headerMark sets one request header on every request of the clients it
// is given to, streams included: ForwardedHeader naming the node on all of
// a Forwarder's, RelayHeader as well on Relay's.
type headerMark struct{ name, value string }

func (m headerMark) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set(m.name, m.value)
		return next(ctx, req)
	}
}

func (m headerMark) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set(m.name, m.value)
		return conn
	}
}

func (headerMark) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Forward returns a client for the leader named by a *cluster.NotLeaderError.
// Other errors, an unknown leader, or a leader at this node's own address
// (a stale view) are not forwarded.
func (f *Forwarder) Forward(err error) (logv1connect.LogServiceClient, bool) {
	var nle *cluster.NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderAddr == "" || nle.LeaderAddr == f.self {
		return nil, false
	}
	return f.peer(nle.LeaderAddr), true
}

// Client returns the client for the node at addr, for Config.Peer: its
// requests present this node's certificate and ForwardedHeader. ok is false
// for an empty address or this node's own.
func (f *Forwarder) Client(addr string) (c logv1connect.LogServiceClient, ok bool) {
	if addr == "" || addr == f.self {
		return nil, false
	}
	return f.peer(addr), true
}

// Relay is Client for a produce this node sends to a node hosting the
// partition without knowing which one leads it (Config.Relay): its
// requests also carry RelayHeader, so a follower that receives one may
// forward it once more, to its leader.
func (f *Forwarder) Relay(addr string) (c logv1connect.LogServiceClient, ok bool) {
	if addr == "" || addr == f.self {
		return nil, false
	}
	return f.client(f.relays, addr, f.header, headerMark{RelayHeader, "1"}), true
}

// peer returns the client for the node at addr, marked as this node's.
func (f *Forwarder) peer(addr string) logv1connect.LogServiceClient {
	return f.client(f.clients, addr, f.header)
}

// client returns the cached client of cache for addr, made with marks.
func (f *Forwarder) client(cache map[string]logv1connect.LogServiceClient, addr string, marks ...connect.Interceptor) logv1connect.LogServiceClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := cache[addr]; ok {
		return c
	}
	if len(cache) >= maxForwardClients {
		clear(cache)
	}
	if f.tracing != nil {
		// Outermost: the client span covers the call, marks and all, and
		// its traceparent goes with the request, streams included.
		marks = append([]connect.Interceptor{f.tracing}, marks...)
	}
	c := logv1connect.NewLogServiceClient(&http.Client{Transport: f.transport}, "https://"+addr,
		connect.WithInterceptors(marks...), connect.WithReadMaxBytes(DefaultMaxMessageBytes),
		protocodec.WithCodec())
	cache[addr] = c
	return c
}

// FetchRecord reads the record at offset from the peer at addr, for
// cluster.Config.FetchRecord: a node heals a damaged record of its store
// from a peer's copy. Peers may consume without an ACL line, as they may
// forward appends (see peerForward).
func (f *Forwarder) FetchRecord(ctx context.Context, addr string, offset uint64) (logstore.Record, error) {
	return f.FetchTopicRecord(ctx, addr, catalog.DefaultTopic, 0, offset)
}

// PartitionStats asks the node at addr for the stats of its own replica of
// a partition (GetStats, which a forwarded request cannot pass on), for
// topics.Config.PeerReplica: a move watches the new replica catch up and
// the old one leave the Raft group. A node that does not host the
// partition passes the question on: the answer's node_id says who
// answered.
func (f *Forwarder) PartitionStats(ctx context.Context, addr, topic string, partition int) (*logv1.GetStatsResponse, error) {
	c, ok := f.Client(addr)
	if !ok {
		return nil, fmt.Errorf("service: no peer at %q", addr)
	}
	return c.GetStats(ctx, &logv1.GetStatsRequest{Topic: topic, Partition: uint32(partition)})
}

// FetchTopicRecord is FetchRecord for a partition of a topic.
func (f *Forwarder) FetchTopicRecord(ctx context.Context, addr, topic string, partition int, offset uint64) (logstore.Record, error) {
	if addr == f.self {
		return logstore.Record{}, errors.New("service: FetchRecord from this node itself")
	}
	resp, err := f.peer(addr).Consume(ctx, &logv1.ConsumeRequest{Offset: offset, Topic: topic, Partition: uint32(partition)})
	if err != nil {
		return logstore.Record{}, err
	}
	r := resp.GetRecord()
	if r.GetOffset() != offset || r.GetTime() == nil {
		return logstore.Record{}, fmt.Errorf("service: %s answered offset %d (time %v) for %d", addr, r.GetOffset(), r.GetTime(), offset)
	}
	rec := logstore.Record{Offset: offset, Time: r.GetTime().AsTime(), Key: r.GetKey(), Value: r.GetValue()}
	for _, h := range r.GetHeaders() {
		rec.Headers = append(rec.Headers, logstore.Header{Key: h.GetKey(), Value: h.GetValue()})
	}
	return rec, nil
}

// Close drops the idle connections to peers.
func (f *Forwarder) Close() { f.transport.CloseIdleConnections() }
