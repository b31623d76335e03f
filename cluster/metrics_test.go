package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
)

// logstoreFamilies are the metrics each of a node's two logstores exports.
var logstoreFamilies = []string{
	"proglog_logstore_fsync_seconds",
	"proglog_logstore_appended_records_total",
	"proglog_logstore_appended_bytes_total",
	"proglog_logstore_segments",
	"proglog_logstore_size_bytes",
	"proglog_logstore_lowest_offset",
	"proglog_logstore_next_offset",
}

// sample reads the series name{labels} (exactly these labels) from g: a
// counter's or gauge's value, a histogram's sample count.
func sample(t testing.TB, g prometheus.Gatherer, name string, labels prometheus.Labels) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := prometheus.Labels{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if !maps.Equal(got, labels) {
				continue
			}
			switch {
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func mustSample(t testing.TB, g prometheus.Gatherer, name string, labels prometheus.Labels) float64 {
	t.Helper()
	v, ok := sample(t, g, name, labels)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// with is labels plus log=name.
func with(labels prometheus.Labels, name string) prometheus.Labels {
	out := maps.Clone(labels)
	if out == nil {
		out = prometheus.Labels{}
	}
	out["log"] = name
	return out
}

// checkLogstoreMetrics checks the node's two logstores on reg (their series
// carry labels besides log): each family has one series per logstore, the
// Raft log's fsync histogram counts the appends, and the gauges read the
// stores the node has now.
func checkLogstoreMetrics(t *testing.T, reg prometheus.Gatherer, n *node, labels prometheus.Labels) {
	t.Helper()
	records, raftLog := with(labels, "records"), with(labels, "raft")
	for _, name := range logstoreFamilies {
		for _, l := range []prometheus.Labels{records, raftLog} {
			mustSample(t, reg, name, l)
		}
	}
	fsyncs := mustSample(t, reg, "proglog_logstore_fsync_seconds", raftLog)
	appended := mustSample(t, reg, "proglog_logstore_appended_records_total", raftLog)
	const appends = 5
	for i := range appends {
		if _, err := n.log.Append(t.Context(), fmt.Appendf(nil, "fsync-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Each entry was fdatasynced into Raft's log before its append was
	// acknowledged (the one-member leader commits what it stored).
	if got := mustSample(t, reg, "proglog_logstore_fsync_seconds", raftLog); got < fsyncs+appends {
		t.Fatalf("raft log fsyncs went from %v to %v over %d appends", fsyncs, got, appends)
	}
	if got := mustSample(t, reg, "proglog_logstore_appended_records_total", raftLog); got < appended+appends {
		t.Fatalf("raft log entries went from %v to %v over %d appends", appended, got, appends)
	}
	_, next := n.log.Bounds()
	waitApplied(t, next, n) // the store writer has written every applied record
	if got := mustSample(t, reg, "proglog_logstore_next_offset", records); got != float64(next) {
		t.Fatalf(`next_offset{log="records"} = %v, the store's next is %d`, got, next)
	}
	last := mustSample(t, reg, "proglog_cluster_raft_last_index", labels)
	if got := mustSample(t, reg, "proglog_logstore_next_offset", raftLog); got != last+1 {
		t.Fatalf(`next_offset{log="raft"} = %v, raft's last index %v`, got, last)
	}
}

// TestLogstoreMetrics: a node exports both of its logstores' metrics on
// its Registerer, told apart by the label log, and keeps exporting them
// (once each) when a store is replaced or the node restarts on the same
// registry; Close takes everything off.
func TestLogstoreMetrics(t *testing.T) {
	p := newTestPKI(t)
	for _, tt := range []struct {
		name string
		// event happens to the running node; it returns the node that runs
		// after it.
		event func(t *testing.T, n *node, reg *prometheus.Registry) *node
	}{
		{"as started", func(_ *testing.T, n *node, _ *prometheus.Registry) *node { return n }},
		{"store reopened after a failed write", func(t *testing.T, n *node, _ *prometheus.Registry) *node {
			t.Helper()
			if err := cluster.BreakStore(n.log); err != nil {
				t.Fatal(err)
			}
			// The store writer finds the store closed, reopens it and
			// writes the entry again; a read waits for the new store.
			off, err := n.log.Append(t.Context(), []byte("after the break"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := n.log.Read(context.Background(), off); err != nil {
				t.Fatal(err)
			}
			return n
		}},
		{"restarted on the same registry", func(t *testing.T, n *node, reg *prometheus.Registry) *node {
			t.Helper()
			n.stop(t)
			if mfs, _ := reg.Gather(); len(mfs) != 0 {
				t.Fatalf("%d metric families left registered after Close", len(mfs))
			}
			back := p.startNode(t, n.id, n.dir, n.port.addr, false, func(c *cluster.Config) { c.Registerer = reg })
			waitLeader(t, back)
			return back
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			n := p.startNode(t, "solo", t.TempDir(), "", true, func(c *cluster.Config) { c.Registerer = reg })
			defer func() { n.stop(t) }()
			waitLeader(t, n)
			appendTo(t, []*node{n}, batch("before", 3))
			n = tt.event(t, n, reg)
			checkLogstoreMetrics(t, reg, n, nil)
			for _, name := range logstoreFamilies {
				if c, err := testutil.GatherAndCount(reg, name); err != nil || c != 2 {
					t.Fatalf("%s has %d series (%v), want 2: records and raft", name, c, err)
				}
			}
			n.stop(t)
			if mfs, _ := reg.Gather(); len(mfs) != 0 {
				t.Fatalf("%d metric families left registered after Close", len(mfs))
			}
		})
	}
}

// TestLogsOnOneRegistry runs two nodes (as one process would run one per
// partition) on one registry, each through a Registerer labelled with its
// partition; without such labels the second cannot start.
func TestLogsOnOneRegistry(t *testing.T) {
	p := newTestPKI(t)
	reg := prometheus.NewPedanticRegistry()
	partition := func(i int) prometheus.Labels { return prometheus.Labels{"partition": fmt.Sprint(i)} }
	var nodes []*node
	for i := range 2 {
		n := p.startNode(t, fmt.Sprint("p", i), t.TempDir(), "", true, func(c *cluster.Config) {
			c.Registerer = prometheus.WrapRegistererWith(partition(i), reg)
		})
		defer func() { n.stop(t) }()
		waitLeader(t, n)
		appendTo(t, []*node{n}, batch("r", 2+3*i))
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		checkLogstoreMetrics(t, reg, n, partition(i))
		if got := mustSample(t, reg, "proglog_cluster_is_leader", partition(i)); got != 1 {
			t.Fatalf("partition %d: is_leader %v", i, got)
		}
	}

	// A third node on the bare registry collides with nothing it can tell
	// apart from: New fails and leaves the others' metrics alone.
	pt := p.startPort(t, "bare", "", clustertest.Logger(t))
	_, err := cluster.New(cluster.Config{NodeID: "bare", DataDir: t.TempDir(), Bootstrap: true, Stream: pt.layer, Logger: clustertest.Logger(t), Registerer: reg})
	pt.stop(t)
	if err == nil {
		t.Fatal("a node without labels registered beside labelled ones")
	}

	nodes[0].stop(t)
	for _, name := range logstoreFamilies {
		if c, err := testutil.GatherAndCount(reg, name); err != nil || c != 2 {
			t.Fatalf("%s has %d series (%v) with one node left, want 2", name, c, err)
		}
	}
	checkLogstoreMetrics(t, reg, nodes[1], partition(1))
}

// TestLogstoreMetricsAcrossSnapshotInstall: a node that catches up through
// a snapshot replaces its store; the store's metrics follow the new one.
func TestLogstoreMetricsAcrossSnapshotInstall(t *testing.T) {
	p := newTestPKI(t)
	compact := func(c *cluster.Config) {
		c.SnapshotThreshold = 20
		c.TrailingLogs = 5
		c.Store.MaxSegmentBytes = 4096 // Raft's log is compacted by whole segments
	}
	nodes := p.startCluster(t, 2, compact)
	leader := waitLeader(t, nodes...)
	for i := range 60 {
		if _, err := leader.log.AppendBatch(t.Context(), batch(fmt.Sprint("r", i), 5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	n3 := p.startNode(t, "n3", t.TempDir(), "", false, compact, func(c *cluster.Config) { c.Registerer = reg })
	t.Cleanup(func() { n3.stop(t) })
	join(t, nodes, n3)
	all := append(nodes, n3)
	end := appendTo(t, all, batch("after-join", 3))
	waitApplied(t, end+3, all...)
	if got := mustSample(t, reg, "proglog_cluster_snapshot_restores_total", nil); got < 1 {
		t.Fatalf("n3 restored %v snapshots, want at least 1", got)
	}
	next := n3.log.Stats().Next
	if got := mustSample(t, reg, "proglog_logstore_next_offset", prometheus.Labels{"log": "records"}); got != float64(next) {
		t.Fatalf(`n3 next_offset{log="records"} = %v, its store's next is %d`, got, next)
	}
	for _, name := range logstoreFamilies {
		if c, err := testutil.GatherAndCount(reg, name); err != nil || c != 2 {
			t.Fatalf("%s has %d series (%v), want 2: records and raft", name, c, err)
		}
	}
}
