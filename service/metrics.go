package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/catalog"
)

// metrics are the service's Prometheus collectors, registered on the
// injected Registerer.
type metrics struct {
	rpcs          *prometheus.CounterVec   // procedure, code
	latency       *prometheus.HistogramVec // procedure, code
	records       prometheus.Counter
	bytes         prometheus.Counter
	tails         prometheus.Gauge
	slowConsumers *prometheus.CounterVec // procedure
}

func newMetrics(reg prometheus.Registerer, topics Topics) (*metrics, error) {
	m := &metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "proglog", Subsystem: "rpc", Name: "requests_total",
			Help: "RPCs handled, by procedure and Connect code (ok for success), including those the ACL refused.",
		}, []string{"procedure", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "proglog", Subsystem: "rpc", Name: "duration_seconds",
			Help:    "Time from the start of an RPC to its end; for streams, the stream's lifetime.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 12), // 100µs to ~2.4s
		}, []string{"procedure", "code"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "proglog", Subsystem: "service", Name: "produced_records_total",
			Help: "Records the API appended to the partitions this node hosts (durably, per the sync policy); forwarded ones are not counted.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "proglog", Subsystem: "service", Name: "produced_bytes_total",
			Help: "Record bytes (key, headers and value) the API appended to the partitions this node hosts.",
		}),
		tails: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "proglog", Subsystem: "service", Name: "live_tails",
			Help: "ConsumeStream streams currently open.",
		}),
		slowConsumers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "proglog", Subsystem: "service", Name: "slow_consumers_total",
			Help: "Streams ended because the client accepted no data within the slow-consumer timeout.",
		}, []string{"procedure"}),
	}
	for _, c := range []prometheus.Collector{m.rpcs, m.latency, m.records, m.bytes, m.tails, m.slowConsumers, newLogCollector(topics)} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("service: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(procedure, code string, d time.Duration) {
	m.rpcs.WithLabelValues(procedure, code).Inc()
	m.latency.WithLabelValues(procedure, code).Observe(d.Seconds())
}

func (m *metrics) appended(records, bytes int) {
	m.records.Add(float64(records))
	m.bytes.Add(float64(bytes))
}

// logCollector reports the bounds and size of the default topic's
// partition 0 (the one log of a standalone node, the system group's in a
// cluster) from Log.Stats at scrape time, when this node hosts it; other
// partitions have no metrics here.
type logCollector struct {
	topics                            Topics
	lowest, next, sizeBytes, segments *prometheus.Desc
}

func newLogCollector(topics Topics) *logCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("proglog", "service", name), help, nil, nil)
	}
	return &logCollector{
		topics:    topics,
		lowest:    desc("log_lowest_offset", "The lowest offset the default topic's partition 0 retains on this node."),
		next:      desc("log_next_offset", "The offset the next record appended to the default topic's partition 0 gets."),
		sizeBytes: desc("log_size_bytes", "The size on disk of the default topic's partition 0 on this node."),
		segments:  desc("log_segments", "How many segments hold the default topic's partition 0 on this node."),
	}
}

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lowest
	ch <- c.next
	ch <- c.sizeBytes
	ch <- c.segments
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	log, err := c.topics.Partition(catalog.DefaultTopic, 0)
	if err != nil {
		return // not hosted here (or not yet)
	}
	st := log.Stats()
	ch <- prometheus.MustNewConstMetric(c.lowest, prometheus.GaugeValue, float64(st.Lowest))
	ch <- prometheus.MustNewConstMetric(c.next, prometheus.GaugeValue, float64(st.Next))
	ch <- prometheus.MustNewConstMetric(c.sizeBytes, prometheus.GaugeValue, float64(st.SizeBytes))
	ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(st.Segments))
}

// observer is the Connect interceptor that counts, times and logs every
// RPC that got past the ACL.
type observer struct{ s *Service }

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

func (o *observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		o.done(ctx, req.Spec().Procedure, err, start)
		return resp, err
	}
}

func (o *observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		o.done(ctx, conn.Spec().Procedure, err, start)
		return err
	}
}

func (o *observer) done(ctx context.Context, procedure string, err error, start time.Time) {
	d := time.Since(start)
	code := codeOf(err)
	o.s.metrics.observe(procedure, code, d)
	subject, _ := Subject(ctx)
	o.s.logAccess(ctx, procedure, subject, code, d)
}

// logAccess writes the one debug line per RPC.
func (s *Service) logAccess(ctx context.Context, procedure, subject, code string, d time.Duration) {
	if !s.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("procedure", procedure), slog.String("subject", subject),
		slog.String("code", code), slog.Duration("duration", d)}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// The call's trace, to find its spans from its log line.
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	s.logger.LogAttrs(ctx, slog.LevelDebug, "rpc", attrs...)
}

// connMetrics count the connections the server holds and refuses. They
// exist without a Registerer too, unregistered.
type connMetrics struct {
	open    *prometheus.GaugeVec   // class
	refused *prometheus.CounterVec // reason
}

// Reasons a connection is refused or cut.
const (
	refusedMaxConns     = "max_conns"
	refusedMaxAnonymous = "max_anonymous_conns"
	refusedHandshake    = "handshake"
	refusedContinuation = "continuation_flood"
)

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "proglog", Subsystem: "server", Name: "connections",
			Help: "Open connections by class: handshake (TLS handshake under way), anonymous, authenticated, handoff (Raft).",
		}, []string{"class"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "proglog", Subsystem: "server", Name: "refused_connections_total",
			Help: "Connections closed by the server's limits, by reason: max_conns, max_anonymous_conns, handshake (failed or timed out), continuation_flood.",
		}, []string{"reason"}),
	}
	for _, class := range []connClass{classHandshake, classAnonymous, classAuthenticated, classHandoff} {
		m.open.WithLabelValues(class.String())
	}
	for _, reason := range []string{refusedMaxConns, refusedMaxAnonymous, refusedHandshake, refusedContinuation} {
		m.refused.WithLabelValues(reason)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.open, m.refused} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("service: register metrics: %w", err)
		}
	}
	return m, nil
}
