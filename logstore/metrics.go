package logstore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the log's Prometheus collectors; nil-safe when no Registerer.
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
			return nil, errors.Join(errors.New("logstore: registering metrics"), err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
