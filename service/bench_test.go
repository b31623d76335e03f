package service_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/tracing/tracingtest"
)

// The benchmarks run the real server over mutual TLS on loopback with the
// log's default, durable sync policy (fdatasync before every
// acknowledgement, shared by concurrent appends). Records are 100 bytes.
//
//	go test -run '^$' -bench . -benchtime 2s ./service

const benchRecordBytes = 100

func benchValue() []byte {
	v := make([]byte, benchRecordBytes)
	_, _ = rand.Read(v)
	return v
}

func reportRate(b *testing.B, records int) {
	b.Helper()
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(0, "ns/op") // ns per iteration means little across these shapes
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// produceConcurrently makes b.N unary Produce calls of value, shared among
// clients, each client from its own goroutine, and returns their latencies.
// The timer runs until the last call returns.
func produceConcurrently(b *testing.B, clients []logv1connect.LogServiceClient, value []byte) []time.Duration {
	b.Helper()
	var (
		next atomic.Int64
		mu   sync.Mutex // guards lat
		lat  = make([]time.Duration, 0, b.N)
		wg   sync.WaitGroup
		fail atomic.Pointer[error]
	)
	for _, client := range clients {
		wg.Go(func() {
			req := &logv1.ProduceRequest{Record: &logv1.Record{Value: value}}
			local := make([]time.Duration, 0, b.N/len(clients)+1)
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if _, err := client.Produce(context.Background(), req); err != nil {
					fail.Store(&err)
					return
				}
				local = append(local, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := fail.Load(); err != nil {
		b.Fatal(*err)
	}
	return lat
}

// BenchmarkProduce: unary Produce, one record per call, from 1 and 64
// concurrent clients, each with its own connection.
func BenchmarkProduce(b *testing.B) {
	for _, clients := range []int{1, 64} {
		for _, proto := range protocols[:2] {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, proto.name), func(b *testing.B) {
				e := newEnv(b, envOptions{})
				value := benchValue()
				cs := make([]logv1connect.LogServiceClient, clients)
				for i := range cs {
					cs[i] = e.benchClient(proto.opts...)
				}
				b.ResetTimer()
				lat := produceConcurrently(b, cs, value)
				reportRate(b, b.N)
				reportLatency(b, lat)
			})
		}
	}
}

func batchOf(n int) []*logv1.Record { return batchOfShape(n, false) }

// batchOfShape makes n records of benchRecordBytes; keyed ones also carry
// a 16-byte key and two small headers, the shape issue #11 measures.
func batchOfShape(n int, keyed bool) []*logv1.Record {
	value := benchValue()
	records := make([]*logv1.Record, n)
	for i := range records {
		records[i] = &logv1.Record{Value: value}
		if keyed {
			records[i].Key = fmt.Appendf(nil, "customer-%07d", i)
			records[i].Headers = []*logv1.Header{
				{Key: "content-type", Value: []byte("application/json")},
				{Key: "source", Value: []byte("checkout")},
			}
		}
	}
	return records
}

// shapes are the record shapes the throughput benchmarks compare.
var shapes = []struct {
	name  string
	keyed bool
}{{"plain", false}, {"keyed", true}}

// BenchmarkProduceBatch: unary ProduceBatch with 100 records per call, one
// op per batch.
func BenchmarkProduceBatch(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("records=100/clients=%d", clients), func(b *testing.B) {
			e := newEnv(b, envOptions{})
			client := e.benchClient()
			req := &logv1.ProduceBatchRequest{Records: batchOf(100)}
			var (
				next atomic.Int64
				wg   sync.WaitGroup
				fail atomic.Pointer[error]
			)
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := client.ProduceBatch(context.Background(), req); err != nil {
							fail.Store(&err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err := fail.Load(); err != nil {
				b.Fatal(*err)
			}
			reportRate(b, b.N*100)
		})
	}
}

// BenchmarkProduceStream: one pipelined ProduceStream, 1 or 100 records
// per request, one op per request.
func BenchmarkProduceStream(b *testing.B) {
	for _, tc := range []struct {
		records int
		proto   string
		opts    []connect.ClientOption
		keyed   bool
	}{
		{1, "grpc", []connect.ClientOption{connect.WithGRPC()}, false},
		{100, "connect", nil, false},
		{100, "grpc", []connect.ClientOption{connect.WithGRPC()}, false},
		{100, "grpc", []connect.ClientOption{connect.WithGRPC()}, true},
	} {
		shape := "plain"
		if tc.keyed {
			shape = "keyed"
		}
		b.Run(fmt.Sprintf("records=%d/%s/%s", tc.records, tc.proto, shape), func(b *testing.B) {
			e := newEnv(b, envOptions{})
			stream, err := e.benchClient(tc.opts...).ProduceStream(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			req := &logv1.ProduceStreamRequest{Records: batchOfShape(tc.records, tc.keyed)}
			b.ResetTimer()
			sendErr := make(chan error, 1)
			go func() {
				for range b.N {
					if err := stream.Send(req); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- stream.CloseRequest()
			}()
			for i := range b.N {
				if _, err := stream.Receive(); err != nil {
					b.Fatalf("ack %d: %v", i, err)
				}
			}
			b.StopTimer()
			if err := <-sendErr; err != nil {
				b.Fatal(err)
			}
			if err := stream.CloseResponse(); err != nil {
				b.Fatal(err)
			}
			reportRate(b, b.N*tc.records)
		})
	}
}

// BenchmarkConsumeStream: one stream reads b.N records written beforehand,
// max_batch records per response (1 = one record per response).
func BenchmarkConsumeStream(b *testing.B) {
	for _, maxBatch := range []uint32{1, 1000} {
		for _, proto := range protocols[:2] {
			for _, shape := range shapes {
				if shape.keyed && (maxBatch == 1 || proto.name != "grpc") {
					continue
				}
				b.Run(fmt.Sprintf("max_batch=%d/%s/%s", maxBatch, proto.name, shape.name), func(b *testing.B) {
					consumeStream(b, maxBatch, proto.opts, shape.keyed)
				})
			}
		}
	}
}

func consumeStream(b *testing.B, maxBatch uint32, opts []connect.ClientOption, keyed bool) {
	e := newEnv(b, envOptions{})
	batch := make([]logstore.Record, 10000)
	for i, r := range batchOfShape(len(batch), keyed) {
		batch[i] = logstore.Record{Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			batch[i].Headers = append(batch[i].Headers, logstore.Header{Key: h.Key, Value: h.Value})
		}
	}
	for left := b.N; left > 0; left -= len(batch) {
		if _, err := e.log.AppendRecords(context.Background(), batch[:min(left, len(batch))]); err != nil {
			b.Fatal(err)
		}
	}
	client := e.benchClient(opts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	stream, err := client.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{MaxBatch: maxBatch})
	if err != nil {
		b.Fatal(err)
	}
	got := 0
	for got < b.N && stream.Receive() {
		if maxBatch > 1 {
			got += len(stream.Msg().GetRecords())
		} else {
			got++
		}
	}
	b.StopTimer()
	if got < b.N {
		b.Fatalf("received %d of %d: %v", got, b.N, stream.Err())
	}
	cancel()
	_ = stream.Close()
	reportRate(b, b.N)
}

// BenchmarkProduceTracing is BenchmarkProduce (Connect) with the server's
// tracing off (no TracerProvider: what a node runs without OTEL_*
// settings), on (every call sampled and exported over OTLP/HTTP to a real
// receiver on loopback, in batches), and on but sampling nothing.
//
//	go test -run '^$' -bench ProduceTracing -benchtime 2s ./service
func BenchmarkProduceTracing(b *testing.B) {
	recv := tracingtest.NewReceiver(b)
	for _, clients := range []int{1, 64} {
		for _, mode := range []string{"off", "on", "unsampled"} {
			b.Run(fmt.Sprintf("clients=%d/tracing=%s", clients, mode), func(b *testing.B) {
				var tp *sdktrace.TracerProvider
				if mode != "off" {
					exp, err := otlptracehttp.New(b.Context(), otlptracehttp.WithEndpointURL(recv.HTTPURL+"/v1/traces"))
					if err != nil {
						b.Fatal(err)
					}
					sampler := sdktrace.AlwaysSample()
					if mode == "unsampled" {
						sampler = sdktrace.NeverSample()
					}
					tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler))
					defer func() { _ = tp.Shutdown(context.Background()) }()
				}
				e := newEnv(b, envOptions{config: func(c *service.Config) {
					if tp != nil {
						c.TracerProvider = tp
					}
				}})
				value := benchValue()
				cs := make([]logv1connect.LogServiceClient, clients)
				for i := range cs {
					cs[i] = e.benchClient()
				}
				b.ResetTimer()
				cpu := cpuTime(b)
				lat := produceConcurrently(b, cs, value)
				// CPU time of the whole process (client, server, exporter)
				// per call: what tracing costs, whatever else the machine
				// runs meanwhile.
				b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/call")
				reportRate(b, b.N)
				reportLatency(b, lat)
			})
		}
	}
}

// benchClient is a root client with proglog's own codec, as package client
// builds them: the benchmarks measure both ends as they run.
func (e *env) benchClient(opts ...connect.ClientOption) logv1connect.LogServiceClient {
	return e.client(idRoot, append([]connect.ClientOption{protocodec.WithAliasingCodec()}, opts...)...)
}
