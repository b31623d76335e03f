package cluster

import (
	"errors"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus collectors. The node's two logstores
// register their own (proglog_logstore_*) on the same Registerer, told
// apart by the label log (see logRegisterer).
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	restores   prometheus.Counter
}

// newMetrics builds the collectors; register exposes them once Raft runs.
func newMetrics(l *Log) *metrics {
	m := &metrics{
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proglog_cluster_snapshot_restores_total",
			Help: "Times the local store was replaced by a Raft snapshot.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.collectors = []prometheus.Collector{
		m.restores,
		gauge("proglog_cluster_is_leader", "1 while this node is the Raft leader.", func() float64 {
			if l.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("proglog_cluster_raft_last_index", "Index of the last entry in this node's Raft log.", func() float64 { return float64(l.raft.LastIndex()) }),
		gauge("proglog_cluster_raft_commit_index", "Highest Raft index this node knows to be committed.", func() float64 { return float64(l.raft.CommitIndex()) }),
		gauge("proglog_cluster_raft_applied_index", "Highest Raft index applied to the local store.", func() float64 { return float64(max(l.raft.AppliedIndex(), l.fsm.index.Load())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "proglog_cluster_raft_log_cache_misses_total",
			Help: "Raft entries read back from the Raft log on disk rather than from the cache of the latest ones (a follower far behind, or an entry larger than the cache).",
		}, func() float64 { return float64(l.logs.misses.Load()) }),
		gauge("proglog_disk_full", "1 while this node refuses appends for want of disk space (free space below --disk-reserve, or a write to the Raft log failed with ENOSPC); reads go on.", func() float64 {
			if l.disk.isFull() {
				return 1
			}
			return 0
		}),
		gauge("proglog_disk_free_bytes", "Free bytes on the data directory's file system (the least of data dir, raft/ and log/) at the latest probe.", func() float64 {
			return float64(l.disk.free.Load())
		}),
		gauge("proglog_cluster_apply_failed", "1 once applying committed entries failed; the node needs a restart.", func() float64 {
			if l.fsm.broken.Load() {
				return 1
			}
			return 0
		}),
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return errors.Join(errors.New("cluster: register metrics"), err)
		}
	}
	m.reg = reg
	return nil
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// The values of the label log on the metrics of the node's two logstores.
const (
	recordsLog = "records" // the local record store, <DataDir>/log
	raftLog    = "raft"    // Raft's log, <DataDir>/raft/log
)

// logRegisterer is reg for one of the node's logstores: their metrics share
// names, and the label log="records" or log="raft" tells them apart. A
// logstore registers on Open and unregisters on Close, so the store that
// replaces one (a snapshot restore, a reopen after a failed write)
// registers the same series again. Nil stays nil.
func logRegisterer(reg prometheus.Registerer, log string) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"log": log}, reg)
}
