package logstore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the log's Prometheus collectors; nil-safe when no Registerer.
//
// They carry no labels of their own, so one Registerer takes one Log: a
// process with several (a cluster node's record store and Raft log, one log
// per partition) gives each a Registerer wrapped with
// prometheus.WrapRegistererWith and labels that tell them apart (cluster
// uses log="records" and log="raft"). Open registers them and Close
// unregisters them, so the same Registerer takes the log again once it is
// reopened (its counters then start from zero, which rate() reads as a
// counter reset); until then a second Open with the same labels fails.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	fsync      prometheus.Histogram
	records    prometheus.Counter
	bytes      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, l *Log) (*metrics, error) {
	m := &metrics{
		reg: reg,
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proglog_logstore_fsync_seconds",
			Help:    "Latency of fdatasync calls on segment stores.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14),
		}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proglog_logstore_appended_records_total",
			Help: "Records appended and acknowledged.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proglog_logstore_appended_bytes_total",
			Help: "Value bytes appended and acknowledged.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	m.collectors = []prometheus.Collector{
		m.fsync, m.records, m.bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "proglog_logstore_segments", Help: "Segments on disk.",
		}, func() float64 { return float64(len(l.segs.Load().segs)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "proglog_logstore_size_bytes", Help: "Bytes in segment stores.",
		}, func() float64 { return float64(l.sizeBytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "proglog_logstore_lowest_offset", Help: "Lowest offset still stored.",
		}, func() float64 { return float64(l.segs.Load().segs[0].base) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "proglog_logstore_next_offset", Help: "Offset the next record will get.",
		}, func() float64 { return float64(l.next.Load()) }),
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, errors.Join(errors.New("logstore: registering metrics (is another open log on this Registerer? label each with prometheus.WrapRegistererWith)"), err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
