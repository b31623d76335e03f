package cluster_test

import (
	"bytes"
	"context"
	"runtime"
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
	AppendRecords(ctx context.Context, recs []logstore.Record) (uint64, error)
}

// benchBatch is a batch of 100 records of 100 B; keyed ones also carry a
// 16 B key and two headers of 12 + 8 bytes (proglog bench produce
// --key-size 16 --headers 2).
func benchBatch(keyed bool) []logstore.Record {
	recs := make([]logstore.Record, 100)
	for i := range recs {
		recs[i].Value = bytes.Repeat([]byte{'a' + byte(i%26)}, 100)
		if keyed {
			recs[i].Key = bytes.Repeat([]byte{'k'}, 16)
			recs[i].Headers = []logstore.Header{
				{Key: "content-type", Value: []byte("text/x1")},
				{Key: "trace-id", Value: []byte("01234567")},
			}
		}
	}
	return recs
}

// BenchmarkAppendBatch compares durable batched appends (benchBatch,
// benchClients concurrent clients) on the bare logstore (SyncAlways),
// a one-node cluster and a three-node cluster over mutual TLS on loopback,
// and a one-node cluster with keyed records. Besides records/s it reports
// the garbage collections per million records: under the node's memory
// limit the collector's work follows what each record allocates.
// Run: go test -run XXX -bench AppendBatch -benchtime 2000x -benchmem ./cluster/
func BenchmarkAppendBatch(b *testing.B) {
	plain, keyed := benchBatch(false), benchBatch(true)
	b.Run("logstore", func(b *testing.B) {
		l, err := logstore.Open(b.TempDir(), logstore.Config{Sync: logstore.SyncAlways})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		runAppendBench(b, l, plain)
	})
	for _, tc := range []struct {
		name  string
		nodes int
		recs  []logstore.Record
	}{
		{"cluster-1", 1, plain},
		{"cluster-3", 3, plain},
		{"cluster-1/keyed", 1, keyed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := newTestPKI(b)
			nodes := p.startCluster(b, tc.nodes)
			leader := waitLeader(b, nodes...)
			runAppendBench(b, leader.log, tc.recs)
		})
	}
}

func runAppendBench(b *testing.B, l batchAppender, recs []logstore.Record) {
	clients := benchClients
	lat := make([][]time.Duration, clients)
	per := b.N / clients
	if per == 0 {
		per = 1
	}
	b.SetBytes(int64(len(recs) * len(recs[0].Value)))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs := ms.NumGC
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for range per {
				t0 := time.Now()
				if _, err := l.AppendRecords(context.Background(), recs); err != nil {
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
	runtime.ReadMemStats(&ms)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all)*len(recs))/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(ms.NumGC-gcs)*1e6/float64(len(all)*len(recs)), "GCs/M-records")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGroupAppendBatch is BenchmarkAppendBatch's cluster-3 for a
// named group (a partition) on each transport: the Mux (one connection
// per peer, pipelined AppendEntries) and hashicorp/raft's NetworkTransport
// on the group's own connections.
// Run: go test -run XXX -bench GroupAppendBatch -benchtime 2000x ./cluster/
func BenchmarkGroupAppendBatch(b *testing.B) {
	recs := benchBatch(false)
	for _, tr := range []cluster.RaftTransport{cluster.TransportMux, cluster.TransportStream} {
		b.Run(tr.String(), func(b *testing.B) {
			p := newTestPKI(b)
			sys := p.startCluster(b, 3)
			replicas := p.startGroupOn(b, "bench.0", sys, func(c *cluster.Config) { c.RaftTransport = tr })
			runAppendBench(b, waitLeader(b, replicas...).log, recs)
		})
	}
}
