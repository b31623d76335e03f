package client_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// BenchmarkProduce compares the client with the bare generated Connect
// client over the same TLS HTTP/2 transport settings, against a one-node
// cluster (Raft log fsynced on every entry), 100 B records.
func BenchmarkProduce(b *testing.B) {
	p := newTestCA(b)
	nodes := p.startCluster(b, 1)
	value := bytes.Repeat([]byte("x"), 100)
	batch := make([][]byte, 100)
	records := make([]*logv1.Record, len(batch))
	for i := range batch {
		batch[i] = value
		records[i] = &logv1.Record{Value: value}
	}

	c := p.newClient(b, "root", client.Config{Addrs: addrs(nodes...)})
	tlsCfg := p.clientTLS(b, "root")
	tlsCfg.NextProtos = []string{"h2"}
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}
	b.Cleanup(tr.CloseIdleConnections)
	direct := logv1connect.NewLogServiceClient(&http.Client{Transport: tr}, "https://"+nodes[0].addr)

	run := func(b *testing.B, perOp int, f func(context.Context) error) {
		b.Helper()
		b.SetBytes(int64(perOp * len(value)))
		for b.Loop() {
			if err := f(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(perOp*b.N)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("Produce/client", func(b *testing.B) {
		run(b, 1, func(ctx context.Context) error { _, err := c.Produce(ctx, value); return err })
	})
	b.Run("Produce/direct", func(b *testing.B) {
		req := &logv1.ProduceRequest{Record: &logv1.Record{Value: value}}
		run(b, 1, func(ctx context.Context) error { _, err := direct.Produce(ctx, req); return err })
	})
	b.Run("ProduceBatch100/client", func(b *testing.B) {
		run(b, len(batch), func(ctx context.Context) error { _, err := c.ProduceBatch(ctx, batch); return err })
	})
	b.Run("ProduceBatch100/direct", func(b *testing.B) {
		req := &logv1.ProduceBatchRequest{Records: records}
		run(b, len(batch), func(ctx context.Context) error { _, err := direct.ProduceBatch(ctx, req); return err })
	})
	b.Run("Producer/client", func(b *testing.B) {
		prod, err := c.NewProducer(b.Context(), 0)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(value)))
		acks := make(chan *client.Ack, client.DefaultProducerWindow)
		done := make(chan error, 1)
		go func() {
			var err error
			for a := range acks {
				if _, werr := a.Wait(context.Background()); werr != nil && err == nil {
					err = werr
				}
			}
			done <- err
		}()
		b.ResetTimer()
		for range b.N {
			a, err := prod.Send(b.Context(), value)
			if err != nil {
				b.Fatal(err)
			}
			acks <- a
		}
		close(acks)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer() // every ack is in: the time covers the whole pipeline
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		if err := prod.Close(b.Context()); err != nil {
			b.Fatal(err)
		}
	})
}
