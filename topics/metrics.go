package topics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/cluster"
)

// collector reports the partitions this node hosts, labelled by topic and
// partition, read at each scrape. (A partition's cluster.Log registers no
// metrics of its own: the system group's carry no topic label, and one
// metric name cannot have two label sets on one registry.)
type collector struct {
	m                                        *Manager
	leader, lowest, next, size, segs, voters *prometheus.Desc
}

func newCollector(m *Manager) *collector {
	labels := []string{"topic", "partition"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &collector{
		m:      m,
		leader: d("proglog_partition_is_leader", "1 while this node leads the partition's Raft group."),
		lowest: d("proglog_partition_lowest_offset", "The oldest record this node's replica of the partition retains."),
		next:   d("proglog_partition_next_offset", "The offset the partition's next record gets, as this node's replica has applied it."),
		size:   d("proglog_partition_size_bytes", "Bytes this node's replica of the partition holds in its record store."),
		segs:   d("proglog_partition_segments", "Segments of this node's replica's record store."),
		voters: d("proglog_partition_voters", "Voters of the partition's Raft group, as this node knows its configuration."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.lowest, c.next, c.size, c.segs, c.voters} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	ps := make([]*partition, 0, len(c.m.running))
	for _, p := range c.m.running {
		ps = append(ps, p)
	}
	c.m.mu.Unlock()
	for _, p := range ps {
		c.m.mu.Lock()
		topic, index := p.ref.Topic.Name, strconv.Itoa(p.ref.Partition)
		c.m.mu.Unlock()
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, topic, index)
		}
		leader := 0.0
		if p.log.IsLeader() {
			leader = 1
		}
		gauge(c.leader, leader)
		st := p.log.Stats()
		gauge(c.lowest, float64(st.Lowest))
		gauge(c.next, float64(st.Next))
		gauge(c.size, float64(st.SizeBytes))
		gauge(c.segs, float64(st.Segments))
		if members, err := p.log.Members(); err == nil {
			gauge(c.voters, float64(len(cluster.VoterIDs(members))))
		}
	}
}
