package cluster_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/cluster"
)

// TestDiskFullRefusesAppendsAndResumes: below the reserve, appends fail
// with ErrDiskFull up front, reads go on, the metric says so, and appends
// resume by themselves once space is back.
func TestDiskFullRefusesAppendsAndResumes(t *testing.T) {
	p := newTestPKI(t)
	reg := prometheus.NewRegistry()
	n := p.startNode(t, "n1", t.TempDir(), "", true, func(c *cluster.Config) {
		c.DiskReserve = 1 << 20
		c.Registerer = reg
	})
	defer n.stop(t)
	waitLeader(t, n)
	var free atomic.Uint64
	free.Store(1 << 30)
	cluster.SetFreeBytes(n.log, func(string) (uint64, error) { return free.Load(), nil })
	if _, err := n.log.AppendBatch(t.Context(), batch("before", 3)); err != nil {
		t.Fatal(err)
	}
	if err := n.log.DiskFull(); err != nil || diskFullGauge(t, reg) != 0 {
		t.Fatalf("DiskFull = %v, gauge %v with space free", err, diskFullGauge(t, reg))
	}

	free.Store(1<<20 - 1)
	err := eventually(t, func() error {
		_, err := n.log.AppendBatch(t.Context(), batch("full", 1))
		if err == nil {
			return errors.New("append succeeded")
		}
		return err
	}, func(err error) bool { return errors.Is(err, cluster.ErrDiskFull) })
	if !strings.Contains(err.Error(), "reserve") || !strings.Contains(err.Error(), "resume") {
		t.Errorf("refusal %q does not say why or what happens next", err)
	}
	if err := n.log.DiskFull(); !errors.Is(err, cluster.ErrDiskFull) || diskFullGauge(t, reg) != 1 {
		t.Fatalf("DiskFull = %v, gauge %v while full", err, diskFullGauge(t, reg))
	}
	if rec, err := n.log.Read(context.Background(), 2); err != nil || string(rec.Value) != "before-2" {
		t.Fatalf("read while full = %q, %v", rec.Value, err)
	}

	free.Store(1 << 30)
	eventually(t, func() error {
		_, err := n.log.AppendBatch(t.Context(), batch("after", 2))
		return err
	}, func(err error) bool { return err == nil })
	if err := n.log.DiskFull(); err != nil || diskFullGauge(t, reg) != 0 {
		t.Fatalf("DiskFull = %v, gauge %v after space came back", err, diskFullGauge(t, reg))
	}
}

// eventually calls f until done accepts its result, for at most 10s.
func eventually(t *testing.T, f func() error, done func(error) bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		err := f()
		if done(err) {
			return err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still %v after 10s", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func diskFullGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "proglog_disk_full" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no proglog_disk_full metric")
	return 0
}
