package cluster

import (
	"errors"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus collectors (the store registers its own
// through Config.Store.Registerer).
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	restores   prometheus.Counter
	// storeRepairs counts the times the store was cut back because it
	// disagreed with the Raft log, and rewritten from it.
	storeRepairs prometheus.Counter
}

// newMetrics builds the collectors; register exposes them once Raft runs.
func newMetrics(l *Log) *metrics {
	m := &metrics{
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proglog_cluster_snapshot_restores_total",
			Help: "Times the local store was replaced by a Raft snapshot.",
		}),
		storeRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proglog_cluster_store_repairs_total",
			Help: "Times the local store disagreed with the Raft log (a damaged or extra record) and was rewritten from it.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.collectors = []prometheus.Collector{
		m.restores,
		m.storeRepairs,
		gauge("proglog_cluster_is_leader", "1 while this node is the Raft leader.", func() float64 {
			if l.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("proglog_cluster_raft_last_index", "Index of the last entry in this node's Raft log.", func() float64 { return float64(l.raft.LastIndex()) }),
		gauge("proglog_cluster_raft_commit_index", "Highest Raft index this node knows to be committed.", func() float64 { return float64(l.raft.CommitIndex()) }),
		gauge("proglog_cluster_raft_applied_index", "Highest Raft index applied to the local store.", func() float64 { return float64(l.raft.AppliedIndex()) }),
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
