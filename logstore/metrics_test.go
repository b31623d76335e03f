package logstore_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proglog/proglog/logstore"
)

// labelled is reg wrapped with log=name, as cluster registers its two
// logstores; "" is reg itself.
func labelled(reg prometheus.Registerer, name string) prometheus.Registerer {
	if name == "" {
		return reg
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"log": name}, reg)
}

// series is what one log should show: its label, the records it counted
// as appended (since it was opened) and its next offset.
type series struct {
	log           string
	records, next int
}

// wantMetrics is the exposition of the appended-records counter and the
// next-offset gauge for the logs in want.
func wantMetrics(want ...series) string {
	var b strings.Builder
	for _, m := range []struct {
		name, help, kind string
		value            func(series) int
	}{
		{"proglog_logstore_appended_records_total", "Records appended and acknowledged.", "counter", func(s series) int { return s.records }},
		{"proglog_logstore_next_offset", "Offset the next record will get.", "gauge", func(s series) int { return s.next }},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, s := range want {
			labels := ""
			if s.log != "" {
				labels = fmt.Sprintf("{log=%q}", s.log)
			}
			fmt.Fprintf(&b, "%s%s %d\n", m.name, labels, m.value(s))
		}
	}
	return b.String()
}

func checkMetrics(t *testing.T, reg prometheus.Gatherer, want ...series) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics(want...)),
		"proglog_logstore_appended_records_total", "proglog_logstore_next_offset"); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsSharedRegistry opens several logs on one registry: each needs
// labels of its own, and an Open that cannot register fails cleanly,
// leaving the others' metrics and its directory as they were.
func TestMetricsSharedRegistry(t *testing.T) {
	for _, tt := range []struct {
		name   string
		logs   []string // the log label of each log, in opening order; "" for none
		failed int      // index of the Open that fails; -1 for none
	}{
		{"one unlabelled", []string{""}, -1},
		{"one labelled", []string{"records"}, -1},
		{"records and raft", []string{"records", "raft"}, -1},
		{"many partitions", []string{"p0", "p1", "p2", "p3"}, -1},
		{"two unlabelled", []string{"", ""}, 1},
		{"same label twice", []string{"raft", "raft"}, 1},
		{"unlabelled beside labelled", []string{"records", ""}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			var want []series
			for i, name := range tt.logs {
				dir := t.TempDir()
				l, err := logstore.Open(dir, logstore.Config{Registerer: labelled(reg, name)})
				if i == tt.failed {
					if err == nil {
						l.Close()
						t.Fatalf("Open of log %d (log=%q) registered beside %v", i, name, tt.logs[:i])
					}
					// The failed Open let go of the directory.
					openLog(t, dir, logstore.Config{})
					continue
				}
				if err != nil {
					t.Fatalf("Open of log %d (log=%q): %v", i, name, err)
				}
				t.Cleanup(func() { l.Close() })
				for j := range i + 1 {
					mustAppend(t, l, value(j, 10))
				}
				want = append(want, series{name, i + 1, i + 1})
			}
			checkMetrics(t, reg, want...)
		})
	}
}

// TestMetricsReopen closes a log, which takes its series off the registry,
// and opens it again on the same one, with and without a label, beside a
// log that stays open.
func TestMetricsReopen(t *testing.T) {
	for _, tt := range []struct {
		name, log, other string
	}{
		{"unlabelled", "", ""},
		{"labelled", "raft", ""},
		{"beside another", "raft", "records"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			var others []series
			if tt.other != "" {
				o := openLog(t, t.TempDir(), logstore.Config{Registerer: labelled(reg, tt.other)})
				mustAppend(t, o, value(0, 10))
				others = append(others, series{tt.other, 1, 1})
			}
			dir := t.TempDir()
			cfg := logstore.Config{Registerer: labelled(reg, tt.log)}
			l := openLog(t, dir, cfg)
			for i := range 4 {
				mustAppend(t, l, value(i, 10))
			}
			checkMetrics(t, reg, append(others, series{tt.log, 4, 4})...)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			checkMetrics(t, reg, others...)
			l = openLog(t, dir, cfg)
			if n, err := testutil.GatherAndCount(reg, "proglog_logstore_fsync_seconds"); err != nil || n != len(others)+1 {
				t.Fatalf("fsync histograms after reopening: %d, %v; want %d", n, err, len(others)+1)
			}
			// The counters start again from zero; the offsets go on.
			mustAppend(t, l, value(4, 10))
			checkMetrics(t, reg, append(others, series{tt.log, 1, 5})...)
		})
	}
}
