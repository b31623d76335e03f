package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

// Log is what the service needs from the log. *logstore.Log implements it;
// the replicated log will too.
type Log interface {
	// AppendRecords appends recs and returns the first one's offset.
	AppendRecords(ctx context.Context, recs []logstore.Record) (uint64, error)
	// Read and ReadBatch return when ctx ends even if the log lags.
	Read(ctx context.Context, offset uint64) (logstore.Record, error)
	ReadBatch(ctx context.Context, offset uint64, maxRecords, maxBytes int, dst []logstore.Record) ([]logstore.Record, error)
	// ReadInto is ReadBatch into memory the caller reuses batch after
	// batch (logstore.Batch).
	ReadInto(ctx context.Context, offset uint64, maxRecords, maxBytes int, b *logstore.Batch) error
	Bounds() (lowest, next uint64)
	Wait(ctx context.Context, offset uint64) error
	Stats() logstore.Stats
	// OffsetForTime returns the first record at or after t, or the next
	// offset.
	OffsetForTime(ctx context.Context, t time.Time) (uint64, error)
}

// Authorizer decides what subject may do ("produce", "consume" or
// "admin") on which topic. The acl package's Policy and File implement it.
type Authorizer interface {
	// Allowed reports whether subject may perform action on topic (""
	// is "default").
	Allowed(subject, topic, action string) bool
	// AllowedAny reports whether some rule could allow subject action on
	// some topic: the check by URL path, before a request's body (and its
	// topic) is read.
	AllowedAny(subject, action string) bool
	// AllowedCluster reports whether subject may perform action on the
	// whole cluster (rules on object "*" only): reflection and /metrics.
	AllowedCluster(subject, action string) bool
	// Actions lists what subject may do on some topic, for WhoAmI.
	Actions(subject string) []string
	// ActionsOn lists what subject may do on topic.
	ActionsOn(subject, topic string) []string
}

// Node is one member of the cluster serving the log, for GetServers.
type Node struct {
	ID       string
	RPCAddr  string
	IsLeader bool // leads the system group (the catalogue, topic "default")
	// PartitionLeaders is how many partitions of all topics it leads.
	PartitionLeaders int
}

// PartitionRef names one partition of a topic.
type PartitionRef struct {
	Topic     string
	Partition int
}

// Defaults for the zero fields of Config.
const (
	DefaultMaxRecordBytes      = 1 << 20
	DefaultMaxMessageBytes     = 8 << 20
	DefaultSlowConsumerTimeout = 30 * time.Second
)

// smallRequestBytes caps requests to health checks, reflection and the
// other RPCs open to anyone (WhoAmI).
const smallRequestBytes = 64 << 10

// Config configures a Service. Authorizer is required, and Topics or Log.
type Config struct {
	// Topics serves the cluster's topics and routes each request to its
	// partition. nil serves one topic, "default", of one partition: Log
	// (a standalone node without Raft); changing topics then fails with
	// FailedPrecondition.
	Topics Topics
	// Log is the log a standalone node serves; ignored when Topics is set.
	Log        Log
	Authorizer Authorizer
	// NodeID, Version and RPCAddr describe this node in GetServers and
	// GetStats; a single node reports itself as the leader.
	NodeID, Version, RPCAddr string
	// Nodes, if set, lists the cluster's members for GetServers (a
	// replicated log knows them); nil means this node alone.
	Nodes func() ([]Node, error)
	// RemoveNode, if set, removes a node that is down from the cluster
	// (RemoveNode): it returns the partitions still placed on it, or an
	// error (a *connect.Error keeps its code; one Forward accepts sends
	// the call to the leader). nil answers Unimplemented (no cluster).
	RemoveNode func(ctx context.Context, id string) (stranded []PartitionRef, err error)
	// Forward, if set, is asked about every append the log refuses: when
	// err says another node leads (a follower of a replicated log), it
	// returns a client for the leader and the append goes there, its
	// answer (offsets or error) becoming this call's. ok false fails the
	// call with err. The leader sees the identity the client presents
	// (the forwarding node's), not the original caller's; this node has
	// already checked the caller. A Forwarder marks its requests so the
	// leader lets a peer node produce without an ACL line (see doc.go).
	// Admin RPCs (CreateTopic, UpdateTopic, DeleteTopic) whose Topics call
	// fails with an error Forward accepts go to the leader alike.
	Forward func(err error) (leader logv1connect.LogServiceClient, ok bool)
	// Peer, if set, returns a client for the node at an RPC address (a
	// Forwarder's Client), for requests on partitions that Topics says
	// other nodes host (*NotHostedError): a produce goes to the
	// partition's leader, a read to one of its replicas. ok false (this
	// node's own address) or a nil Peer fails such requests with
	// Unavailable.
	Peer func(addr string) (peer logv1connect.LogServiceClient, ok bool)
	// Relay, if set, is Peer for a produce sent to a replica while the
	// partition's leader is unknown here (a Forwarder's Relay): the replica
	// may pass it on to its leader. Without it such produces go through
	// Peer and fail at a follower.
	Relay func(addr string) (peer logv1connect.LogServiceClient, ok bool)
	// MaxRecordBytes caps one record's value; larger ones fail with
	// InvalidArgument before they reach the log. A topic's own
	// MaxRecordBytes, when set and lower, caps its records. Default 1 MiB.
	MaxRecordBytes int
	// MaxMessageBytes caps one request message (after decompression);
	// larger ones fail with ResourceExhausted. Default 8 MiB, or more if
	// MaxRecordBytes needs it.
	MaxMessageBytes int
	// SlowConsumerTimeout ends a stream whose client has not accepted a
	// response (or a ConsumeStream batch of up to 1 MiB) for this long.
	// Default 30s.
	SlowConsumerTimeout time.Duration
	// CompressMinBytes gzips responses at least this large for clients
	// that accept gzip. 0 never compresses: on a LAN, compressing record
	// batches costs more CPU than it saves time. Compressed requests are
	// always accepted.
	CompressMinBytes int
	// Dashboard, if not nil, is served at "/" without authorization.
	Dashboard http.Handler
	Logger    *slog.Logger
	// Registerer receives the service's metrics; nil means a private
	// registry. /metrics serves Gatherer, or Registerer if it is also a
	// Gatherer (a *prometheus.Registry is both).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// TracerProvider, if set, traces every LogService call (see
	// "Tracing" in doc.go); nil installs no tracing at all.
	TracerProvider trace.TracerProvider
}

// Service implements logv1connect.LogServiceHandler and serves it with
// everything around it; see Handler.
type Service struct {
	draining        atomic.Bool // SetServing(false): not ready, whatever the node reports
	topics          Topics
	authz           Authorizer
	nodeID          string
	version         string
	rpcAddr         string
	nodes           func() ([]Node, error)
	removeNode      func(context.Context, string) ([]PartitionRef, error)
	forward         func(error) (logv1connect.LogServiceClient, bool)
	peer            func(string) (logv1connect.LogServiceClient, bool)
	relay           func(string) (logv1connect.LogServiceClient, bool)
	spread          sync.Map // topic name -> *atomic.Uint64, keyless produces' round robin
	maxRecordBytes  int
	maxMessageBytes int
	slowTimeout     time.Duration
	logger          *slog.Logger
	tracer          trace.Tracer // nil: tracing off
	metrics         *metrics
	health          *grpchealth.StaticChecker
	handler         http.Handler
}

var _ logv1connect.LogServiceHandler = (*Service)(nil)

// New checks cfg, registers the metrics and builds the HTTP handler.
func New(cfg Config) (*Service, error) {
	if cfg.Topics == nil && cfg.Log == nil {
		return nil, errors.New("service: Config.Topics or Config.Log is required")
	}
	if cfg.Authorizer == nil {
		return nil, errors.New("service: Config.Authorizer is required (deny by default: give it an empty policy)")
	}
	if cfg.MaxRecordBytes < 0 || cfg.MaxMessageBytes < 0 || cfg.SlowConsumerTimeout < 0 || cfg.CompressMinBytes < 0 {
		return nil, errors.New("service: negative limit in Config")
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.MaxMessageBytes == 0 {
		// Room for one maximal record and its framing, at least.
		cfg.MaxMessageBytes = max(DefaultMaxMessageBytes, cfg.MaxRecordBytes+64<<10)
	}
	if cfg.SlowConsumerTimeout == 0 {
		cfg.SlowConsumerTimeout = DefaultSlowConsumerTimeout
	}
	if cfg.MaxMessageBytes < cfg.MaxRecordBytes {
		return nil, fmt.Errorf("service: MaxMessageBytes %d is below MaxRecordBytes %d: no maximal record could be sent",
			cfg.MaxMessageBytes, cfg.MaxRecordBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	gatherer := cfg.Gatherer
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer = reg
		if gatherer == nil {
			gatherer = reg
		}
	}
	if gatherer == nil {
		g, ok := cfg.Registerer.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("service: Config.Registerer is not a Gatherer: set Config.Gatherer for /metrics")
		}
		gatherer = g
	}
	topics := cfg.Topics
	if topics == nil {
		topics = &standalone{log: cfg.Log, nodeID: cfg.NodeID, rpcAddr: cfg.RPCAddr}
	}
	s := &Service{
		topics:          topics,
		authz:           cfg.Authorizer,
		nodeID:          cfg.NodeID,
		version:         cfg.Version,
		rpcAddr:         cfg.RPCAddr,
		nodes:           cfg.Nodes,
		removeNode:      cfg.RemoveNode,
		forward:         cfg.Forward,
		peer:            cfg.Peer,
		relay:           cfg.Relay,
		maxRecordBytes:  cfg.MaxRecordBytes,
		maxMessageBytes: cfg.MaxMessageBytes,
		slowTimeout:     cfg.SlowConsumerTimeout,
		logger:          cfg.Logger,
		health:          grpchealth.NewStaticChecker(logv1connect.LogServiceName),
	}
	s.SetReady(false) // until the node says otherwise
	m, err := newMetrics(cfg.Registerer, topics)
	if err != nil {
		return nil, err
	}
	s.metrics = m

	interceptors := connect.WithInterceptors(&observer{s: s})
	logInterceptors := interceptors
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
		otel, err := otelInterceptor(cfg.TracerProvider)
		if err != nil {
			return nil, err
		}
		// Outermost: the span covers the whole call, and the observer's
		// log line runs inside it.
		logInterceptors = connect.WithInterceptors(otel, &observer{s: s})
	}
	compressMin := cfg.CompressMinBytes
	if compressMin == 0 {
		compressMin = math.MaxInt
	}
	mux := http.NewServeMux()
	mux.Handle(logv1connect.NewLogServiceHandler(s,
		logInterceptors,
		// A request's bytes and strings point into one copy of it, not an
		// allocation each: record clips the slices it hands on.
		protocodec.WithAliasingCodec(),
		connect.WithReadMaxBytes(cfg.MaxMessageBytes),
		connect.WithCompressMinBytes(compressMin),
	))
	reflector := grpcreflect.NewStaticReflector(logv1connect.LogServiceName, grpchealth.HealthV1ServiceName)
	// Their requests are small; without a limit, anyone could make the
	// open health check buffer an arbitrarily large message.
	smallRequests := connect.WithReadMaxBytes(smallRequestBytes)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, interceptors, smallRequests))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, interceptors, smallRequests))
	mux.Handle(grpchealth.NewHandler(s.health, interceptors, smallRequests))
	mux.Handle(metricsPath, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
	}))
	if cfg.Dashboard != nil {
		// "/" rather than "GET /": a method pattern conflicts with the
		// Connect routes' method-less ones.
		mux.Handle("/", cfg.Dashboard)
	}
	s.handler = s.authenticate(mux)
	return s, nil
}

// Handler serves everything: the LogService (Connect, gRPC, gRPC-Web),
// reflection, health, /metrics and the dashboard, behind the authentication
// and ACL middleware.
func (s *Service) Handler() http.Handler { return s.handler }

// SetServing sets what the gRPC health check reports for "" and the
// LogService, e.g. NOT_SERVING while draining before a shutdown (which
// also makes ReadyHealthService NOT_SERVING).
func (s *Service) SetServing(serving bool) {
	status := grpchealth.StatusNotServing
	if serving {
		status = grpchealth.StatusServing
	}
	s.draining.Store(!serving)
	s.health.SetStatus("", status)
	s.health.SetStatus(logv1connect.LogServiceName, status)
	if !serving {
		s.SetReady(false)
	}
}
