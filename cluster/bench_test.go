package cluster_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// benchClients is the number of concurrent appenders; with one batch in
// flight per client, more clients let raft and group commit batch more.
const benchClients = 32

type batchAppender interface {
	AppendBatch(ctx context.Context, values [][]byte) (uint64, error)
}

// BenchmarkAppendBatch compares durable batched appends (100 records of
// 100 B per batch, benchClients concurrent clients) on the bare logstore (SyncAlways),
// a one-node cluster and a three-node cluster over mutual TLS on loopback.
// Run: go test -run XXX -bench AppendBatch -benchtime 2000x ./cluster/
func BenchmarkAppendBatch(b *testing.B) {
	values := make([][]byte, 100)
	for i := range values {
		values[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 100)
	}
	b.Run("logstore", func(b *testing.B) {
		l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: logstore.SyncAlways})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		runAppendBench(b, l, values)
	})
	for _, n := range []int{1, 3} {
		name := map[int]string{1: "cluster-1", 3: "cluster-3"}[n]
		b.Run(name, func(b *testing.B) {
			p := newTestPKI(b)
			nodes := p.startCluster(b, n)
			leader := waitLeader(b, nodes...)
			runAppendBench(b, leader.log, values)
		})
	}
}

func runAppendBench(b *testing.B, l batchAppender, values [][]byte) {
	clients := benchClients
	lat := make([][]time.Duration, clients)
	per := b.N / clients
	if per == 0 {
		per = 1
	}
	b.SetBytes(int64(len(values) * len(values[0])))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for range per {
				t0 := time.Now()
				if _, err := l.AppendBatch(context.Background(), values); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all)*len(values))/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGroupAppendBatch is BenchmarkAppendBatch's cluster-3 for a
// named group (a partition) on each transport: the Mux (one connection
// per peer, pipelined AppendEntries) and hashicorp/raft's NetworkTransport
// on the group's own connections.
// Run: go test -run XXX -bench GroupAppendBatch -benchtime 2000x ./cluster/
func BenchmarkGroupAppendBatch(b *testing.B) {
	values := make([][]byte, 100)
	for i := range values {
		values[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 100)
	}
	for _, tr := range []cluster.RaftTransport{cluster.TransportMux, cluster.TransportStream} {
		b.Run(tr.String(), func(b *testing.B) {
			p := newTestPKI(b)
			sys := p.startCluster(b, 3)
			replicas := p.startGroupOn(b, "bench.0", sys, func(c *cluster.Config) { c.RaftTransport = tr })
			runAppendBench(b, waitLeader(b, replicas...).log, values)
		})
	}
}
