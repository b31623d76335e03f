package service_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// gauge reads one unlabelled metric (gauge or counter) from reg; 0 if absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return total
}

func produceN(t *testing.T, c logv1connect.LogServiceClient, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: rec(fmt.Sprintf("%s%d", prefix, i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConsumeStreamFollowsLive(t *testing.T) {
	tests := []struct {
		name string
		req  *logv1.ConsumeStreamRequest
		want []string
	}{
		{"from offset", &logv1.ConsumeStreamRequest{Offset: 3}, []string{"old3", "old4", "new0", "new1"}},
		{"from end", &logv1.ConsumeStreamRequest{FromEnd: true}, []string{"new0", "new1"}},
		{"two before end", &logv1.ConsumeStreamRequest{FromEnd: true, Offset: 2}, []string{"old3", "old4", "new0", "new1"}},
		{"more before end than the log holds", &logv1.ConsumeStreamRequest{FromEnd: true, Offset: 50, MaxBatch: 10},
			[]string{"old0", "old1", "old2", "old3", "old4", "new0", "new1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			root := e.client(idRoot)
			produceN(t, root, "old", 5)
			stream, err := e.client(idReader).ConsumeStream(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			// The handler has chosen its start offset once the tail gauge
			// shows it; only then are the new records produced.
			waitFor(t, "the tail to open", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 1 })
			produceN(t, root, "new", 2)
			var got []string
			for len(got) < len(tt.want) && stream.Receive() {
				msg := stream.Msg()
				if msg.GetRecord() != nil {
					got = append(got, string(msg.GetRecord().GetValue()))
				}
				for _, r := range msg.GetRecords() {
					got = append(got, string(r.GetValue()))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v (err %v)", got, tt.want, stream.Err())
			}
		})
	}
}

// Cancelling a tail on the client ends the handler (the gauge drops) and
// leaves no goroutine behind (goleak in TestMain).
func TestConsumeStreamCancel(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			stream, err := e.client(idRoot, proto.opts...).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{FromEnd: true})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the tail to open", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 1 })
			cancel()
			if stream.Receive() {
				t.Fatal("a record on an empty log")
			}
			if codeOf(stream.Err()) != connect.CodeCanceled {
				t.Fatalf("client sees %v", stream.Err())
			}
			stream.Close()
			waitFor(t, "the tail to end", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 0 })
		})
	}
}

// Shutdown ends idle tails and idle produce streams at once (Shutdown would
// otherwise fail at its 10-second deadline in env.stop), after
// acknowledging what was received.
func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := t.Context()
	var tails []*connect.ServerStreamForClient[logv1.ConsumeStreamResponse]
	for _, proto := range protocols {
		s, err := e.client(idRoot, proto.opts...).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{FromEnd: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		tails = append(tails, s)
	}
	waitFor(t, "the tails to open", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 3 })

	ps, err := e.client(idRoot, connect.WithGRPC()).ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.CloseResponse()
	if err := ps.Send(&logv1.ProduceStreamRequest{Record: rec("before shutdown")}); err != nil {
		t.Fatal(err)
	}
	if ack, err := ps.Receive(); err != nil || ack.GetOffset() != 0 {
		t.Fatalf("ack: %v, %v", ack, err)
	}

	for i, s := range tails {
		if !s.Receive() || string(s.Msg().GetRecord().GetValue()) != "before shutdown" {
			t.Fatalf("tail %d: %v, %v", i, s.Msg(), s.Err())
		}
	}

	e.stop() // fails the test if Shutdown hits its deadline

	for i, s := range tails {
		if s.Receive() {
			t.Fatalf("tail %d: unexpected record", i)
		}
		if codeOf(s.Err()) != connect.CodeUnavailable {
			t.Fatalf("tail %d (%s) ended with %v, want Unavailable", i, protocols[i].name, s.Err())
		}
	}
	if _, err := ps.Receive(); codeOf(err) != connect.CodeUnavailable {
		t.Fatalf("produce stream ended with %v, want Unavailable", err)
	}
	if gauge(t, e.reg, "proglog_service_live_tails") != 0 {
		t.Fatal("tails still open after Shutdown")
	}
}

// Several pipelined ProduceStreams and unary producers at once: each
// stream's acknowledgements come in order, and every acknowledged record
// is in the log where its acknowledgement says.
func TestProduceStreamOrderUnderConcurrency(t *testing.T) {
	e := newEnv(t, envOptions{})
	const (
		streams  = 4
		requests = 300
	)
	type ackd struct {
		offset uint64
		values []string
	}
	results := make([][]ackd, streams)
	var wg sync.WaitGroup
	errs := make(chan error, streams*2+1)
	for s := range streams {
		proto := protocols[s%2] // Connect and gRPC; gRPC-Web bidi needs HTTP/2 too
		client := e.client(idRoot, proto.opts...)
		stream, err := client.ProduceStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var sent [][]string
		var sentMu sync.Mutex // guards sent between the sender and the receiver
		wg.Go(func() {
			// Send everything without waiting for acknowledgements.
			for r := range requests {
				n := 1 + r%5
				values := make([]string, n)
				req := &logv1.ProduceStreamRequest{}
				for i := range n {
					values[i] = fmt.Sprintf("s%d-r%d-i%d", s, r, i)
					req.Records = append(req.Records, rec(values[i]))
				}
				if n == 1 {
					req = &logv1.ProduceStreamRequest{Record: rec(values[0])}
				}
				sentMu.Lock()
				sent = append(sent, values)
				sentMu.Unlock()
				if err := stream.Send(req); err != nil {
					errs <- fmt.Errorf("stream %d send %d: %w", s, r, err)
					return
				}
			}
			if err := stream.CloseRequest(); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			defer stream.CloseResponse()
			for r := range requests {
				ack, err := stream.Receive()
				if err != nil {
					errs <- fmt.Errorf("stream %d ack %d: %w", s, r, err)
					return
				}
				sentMu.Lock()
				values := sent[r]
				sentMu.Unlock()
				if int(ack.GetCount()) != len(values) {
					errs <- fmt.Errorf("stream %d ack %d: count %d, want %d", s, r, ack.GetCount(), len(values))
					return
				}
				if r > 0 {
					prev := results[s][r-1]
					if ack.GetOffset() < prev.offset+uint64(len(prev.values)) {
						errs <- fmt.Errorf("stream %d ack %d: offset %d before the previous request's end", s, r, ack.GetOffset())
						return
					}
				}
				results[s] = append(results[s], ackd{ack.GetOffset(), values})
			}
			if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
				errs <- fmt.Errorf("stream %d end: %v", s, err)
			}
		})
	}
	wg.Go(func() {
		client := e.client(idRoot)
		for i := range 100 {
			if _, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec(fmt.Sprintf("unary%d", i))}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 100
	for s := range streams {
		for _, a := range results[s] {
			total += len(a.values)
			for i, want := range a.values {
				got, err := e.log.Read(context.Background(), a.offset+uint64(i))
				if err != nil || string(got.Value) != want {
					t.Fatalf("offset %d: %q, %v; want %q", a.offset+uint64(i), got.Value, err, want)
				}
			}
		}
	}
	if _, next := e.log.Bounds(); next != uint64(total) {
		t.Fatalf("log holds %d records, want %d", next, total)
	}
}

// A bad request in the middle of a stream ends it with InvalidArgument after
// the earlier requests are acknowledged; nothing after it is appended.
func TestProduceStreamBadRequestMidStream(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.MaxRecordBytes = 16 }})
	for _, proto := range protocols[:2] {
		t.Run(proto.name, func(t *testing.T) {
			_, base := e.log.Bounds()
			stream, err := e.client(idRoot, proto.opts...).ProduceStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer stream.CloseResponse()
			for _, req := range []*logv1.ProduceStreamRequest{
				{Record: rec("a")}, {Records: []*logv1.Record{rec("b"), rec("c")}},
				{Record: rec("far too long for the limit")}, {Record: rec("d")},
			} {
				if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
			}
			_ = stream.CloseRequest()
			for i, want := range []uint64{base, base + 1} {
				ack, err := stream.Receive()
				if err != nil || ack.GetOffset() != want {
					t.Fatalf("ack %d: %v, %v; want offset %d", i, ack, err, want)
				}
			}
			if _, err := stream.Receive(); codeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("stream ended with %v, want InvalidArgument", err)
			}
			if _, next := e.log.Bounds(); next != base+3 {
				t.Fatalf("log grew to %d, want %d", next, base+3)
			}
		})
	}
}

// A client that never reads its tail is cut off after the slow-consumer
// timeout; its handler ends (the gauge drops, goleak finds no goroutine).
// Large records block in Write, small ones in Flush: both are caught.
func TestSlowConsumerIsEnded(t *testing.T) {
	for _, size := range []struct {
		name         string
		bytes, count int
		maxBatch     uint32
	}{
		{"32KiB records", 32 << 10, 64, 1}, // 2 MiB, far beyond the client's 64 KiB window
		{"100B records", 100, 5000, 1},
		{"100B records in batches", 100, 20000, 100},
	} {
		t.Run(size.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: func(c *service.Config) { c.SlowConsumerTimeout = 200 * time.Millisecond }})
			root := e.client(idRoot)
			for left := size.count; left > 0; left -= 500 {
				batch := &logv1.ProduceBatchRequest{}
				for range min(left, 500) {
					value := make([]byte, size.bytes)
					_, _ = rand.Read(value) // incompressible, should gzip be on
					batch.Records = append(batch.Records, &logv1.Record{Value: value})
				}
				if _, err := root.ProduceBatch(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
			}
			hc := e.httpClient(idRoot, false, &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10})
			for i, proto := range protocols {
				t.Run(proto.name, func(t *testing.T) {
					client := logv1connect.NewLogServiceClient(hc, e.url, proto.opts...)
					stream, err := client.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{MaxBatch: size.maxBatch})
					if err != nil {
						t.Fatal(err)
					}
					defer stream.Close()
					// Never read: the server's sends block on flow control.
					waitFor(t, "the slow consumer to be ended", func() bool {
						return gauge(t, e.reg, "proglog_service_slow_consumers_total") == float64(i+1)
					})
					waitFor(t, "the tail to end", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 0 })
					// Whatever was buffered can be read, then the stream fails.
					n := 0
					for stream.Receive() {
						n++
					}
					if stream.Err() == nil || n*int(size.maxBatch) >= size.count {
						t.Fatalf("read %d responses, then %v; want the stream cut short", n, stream.Err())
					}
				})
			}
			// Other clients are unaffected.
			if _, err := root.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("after")}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The slow-consumer deadline applies to blocked sends only: a producer or
// a tail that pauses longer than the timeout keeps its stream.
func TestPausesAreNotSlowConsumers(t *testing.T) {
	// Generous against a loaded machine delaying a legitimate send.
	const timeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.SlowConsumerTimeout = timeout }})
	root := e.client(idRoot, connect.WithGRPC())
	ps, err := root.ProduceStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer ps.CloseResponse()
	tail, err := root.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	for i := range 3 {
		if err := ps.Send(&logv1.ProduceStreamRequest{Record: rec(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		if ack, err := ps.Receive(); err != nil || ack.GetOffset() != uint64(i) {
			t.Fatalf("ack %d: %v, %v", i, ack, err)
		}
		if !tail.Receive() || tail.Msg().GetRecord().GetOffset() != uint64(i) {
			t.Fatalf("tail %d: %v, %v", i, tail.Msg(), tail.Err())
		}
		time.Sleep(2 * timeout) // a pause, not a blocked send
	}
	if n := gauge(t, e.reg, "proglog_service_slow_consumers_total"); n != 0 {
		t.Fatalf("%v streams ended as slow consumers", n)
	}
}

// A producer that never reads its acknowledgements is a slow consumer too:
// once flow control stops the acks, the stream is ended and the producer's
// sends fail instead of piling up.
func TestProducerThatNeverReadsAcks(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.SlowConsumerTimeout = 200 * time.Millisecond }})
	hc := e.httpClient(idRoot, false, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10, MaxReceiveBufferPerConnection: 64 << 10})
	client := logv1connect.NewLogServiceClient(hc, e.url, connect.WithGRPC())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		req := &logv1.ProduceStreamRequest{Record: rec("x")}
		for range 1_000_000 {
			if err := stream.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- errors.New("every send succeeded")
	}()
	waitFor(t, "the producer to be ended", func() bool {
		return gauge(t, e.reg, "proglog_service_slow_consumers_total") == 1
	})
	select {
	case err := <-sendErr:
		if err == nil || err.Error() == "every send succeeded" {
			t.Fatalf("sender: %v", err)
		}
	case <-time.After(10 * time.Second):
		cancel() // the client transport may still be waiting for window
		<-sendErr
	}
	_ = stream.CloseResponse()
	// Records received before the end are in the log; their acks were lost.
	if _, next := e.log.Bounds(); next == 0 {
		t.Fatal("nothing was appended")
	}
}

// gatedLog is the real log with a gate in front of AppendRecords, to hold a
// produce in flight while the server shuts down.
type gatedLog struct {
	*logstore.Log
	entered chan struct{}
	release chan struct{}
}

func (g *gatedLog) AppendRecords(ctx context.Context, recs []logstore.Record) (uint64, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Log.AppendRecords(ctx, recs)
}

// Shutdown lets a unary produce that is under way finish and answer,
// while it ends live tails at once.
func TestShutdownFinishesInFlightProduce(t *testing.T) {
	gate := &gatedLog{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, envOptions{config: func(c *service.Config) {
		gate.Log = c.Log.(*logstore.Log)
		c.Log = gate
	}})
	client := e.client(idRoot)
	tail, err := client.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	waitFor(t, "the tail to open", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == 1 })

	type result struct {
		resp *logv1.ProduceResponse
		err  error
	}
	produced := make(chan result, 1)
	go func() {
		resp, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec("in flight")})
		produced <- result{resp, err}
	}()
	<-gate.entered

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.stop()
	}()
	// The tail ending shows that shutdown has begun.
	if tail.Receive() {
		t.Fatal("tail got a record before the produce was released")
	}
	if codeOf(tail.Err()) != connect.CodeUnavailable {
		t.Fatalf("tail ended with %v", tail.Err())
	}
	close(gate.release)
	r := <-produced
	if r.err != nil || r.resp.GetOffset() != 0 {
		t.Fatalf("in-flight produce: %v, %v", r.resp, r.err)
	}
	<-stopped
	if got, err := gate.Read(context.Background(), 0); err != nil || string(got.Value) != "in flight" {
		t.Fatalf("record: %q, %v", got.Value, err)
	}
}

// TestProduceStreamShapesVary sends requests whose records change shape
// from one to the next (keys, header counts, sizes) on concurrent streams
// over the binary codecs and JSON: each stream's requests are decoded into
// storage reused from the ones before (produceArena), so a key or header
// left over from an earlier request, or a request's bytes reused before
// its records were written, shows up as a record read back wrong.
func TestProduceStreamShapesVary(t *testing.T) {
	e := newEnv(t, envOptions{})
	clients := []logv1connect.LogServiceClient{
		e.client(idRoot), e.client(idRoot, connect.WithGRPC()), e.client(idRoot, connect.WithProtoJSON()),
	}
	const requests = 60
	shape := func(s, r, i int) *logv1.Record {
		rec := &logv1.Record{Value: []byte(strings.Repeat(fmt.Sprintf("s%d-r%d-i%d.", s, r, i), 1+(r*7+i)%9))}
		if (r+i)%3 != 0 {
			rec.Key = []byte(fmt.Sprintf("key-%d-%d", r, i))
		}
		for h := range (r + 2*i) % 4 {
			rec.Headers = append(rec.Headers, &logv1.Header{Key: fmt.Sprintf("h%d-%d", h, r), Value: []byte(strings.Repeat("v", r%5))})
		}
		return rec
	}
	type sentReq struct {
		offset uint64
		recs   []*logv1.Record
	}
	sent := make([][]sentReq, len(clients))
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for s, c := range clients {
		wg.Go(func() {
			stream, err := c.ProduceStream(t.Context())
			if err != nil {
				errs <- err
				return
			}
			defer stream.CloseResponse()
			var reqs [][]*logv1.Record
			for r := range requests {
				var recs []*logv1.Record
				for i := range 1 + r%4 {
					recs = append(recs, shape(s, r, i))
				}
				req := &logv1.ProduceStreamRequest{Records: recs}
				if len(recs) == 1 {
					req = &logv1.ProduceStreamRequest{Record: recs[0]}
				}
				if err := stream.Send(req); err != nil {
					errs <- fmt.Errorf("stream %d send %d: %w", s, r, err)
					return
				}
				reqs = append(reqs, recs)
			}
			if err := stream.CloseRequest(); err != nil {
				errs <- err
				return
			}
			for r := range requests {
				ack, err := stream.Receive()
				if err != nil {
					errs <- fmt.Errorf("stream %d ack %d: %w", s, r, err)
					return
				}
				sent[s] = append(sent[s], sentReq{ack.GetOffset(), reqs[r]})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s := range clients {
		for _, req := range sent[s] {
			for i, want := range req.recs {
				got, err := e.log.Read(t.Context(), req.offset+uint64(i))
				if err != nil {
					t.Fatal(err)
				}
				var headers []*logv1.Header
				for _, h := range got.Headers {
					headers = append(headers, &logv1.Header{Key: h.Key, Value: h.Value})
				}
				back := &logv1.Record{Value: got.Value, Key: got.Key, Headers: headers}
				if !proto.Equal(back, want) {
					t.Fatalf("stream %d, offset %d: read back %v, want %v", s, req.offset+uint64(i), back, want)
				}
			}
		}
	}
}
