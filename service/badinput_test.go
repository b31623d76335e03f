package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

const (
	testMaxRecord  = 1024
	testMaxMessage = 4096
)

func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{
		config: func(c *service.Config) {
			c.MaxRecordBytes = testMaxRecord
			c.MaxMessageBytes = testMaxMessage
		},
		// Small segments, so TruncateBefore can drop the oldest ones.
		logConfig: func(c *logstore.Config) { c.MaxSegmentBytes = 4096 },
	})
	ctx := t.Context()
	root := e.client(idRoot)
	for i := range 100 {
		if _, err := root.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: bytes.Repeat([]byte{'x'}, 200+i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.log.TruncateBefore(50); err != nil {
		t.Fatal(err)
	}
	lowest, next := e.log.Bounds()
	if lowest == 0 || next != 100 {
		t.Fatalf("after TruncateBefore: bounds [%d, %d); want a raised lowest offset", lowest, next)
	}

	oversize := &logv1.Record{Value: make([]byte, testMaxRecord+1)}
	maxSize := &logv1.Record{Value: make([]byte, testMaxRecord)}
	tests := []struct {
		name    string
		call    func(logv1connect.LogServiceClient) error
		code    connect.Code
		message string // a substring the error message must hold
	}{
		{"oversize record", func(c logv1connect.LogServiceClient) error {
			_, err := c.Produce(ctx, &logv1.ProduceRequest{Record: oversize})
			return err
		}, connect.CodeInvalidArgument, "exceeds the limit of 1024 bytes"},
		{"oversize record in batch", func(c logv1connect.LogServiceClient) error {
			_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{rec("ok"), oversize}})
			return err
		}, connect.CodeInvalidArgument, "record 1 of 1025 bytes"},
		{"oversize record in stream", func(c logv1connect.LogServiceClient) error {
			return produceStream(ctx, c, &logv1.ProduceStreamRequest{Record: oversize})
		}, connect.CodeInvalidArgument, "exceeds the limit"},
		{"oversize message", func(c logv1connect.LogServiceClient) error {
			_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{maxSize, maxSize, maxSize, maxSize, maxSize}})
			return err
		}, connect.CodeResourceExhausted, ""},
		{"oversize message in stream", func(c logv1connect.LogServiceClient) error {
			return produceStream(ctx, c, &logv1.ProduceStreamRequest{Records: []*logv1.Record{maxSize, maxSize, maxSize, maxSize, maxSize}})
		}, connect.CodeResourceExhausted, ""},
		{"no record", func(c logv1connect.LogServiceClient) error {
			_, err := c.Produce(ctx, &logv1.ProduceRequest{})
			return err
		}, connect.CodeInvalidArgument, "record is required"},
		{"empty batch", func(c logv1connect.LogServiceClient) error {
			_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{})
			return err
		}, connect.CodeInvalidArgument, "empty batch"},
		{"empty stream request", func(c logv1connect.LogServiceClient) error {
			return produceStream(ctx, c, &logv1.ProduceStreamRequest{})
		}, connect.CodeInvalidArgument, "empty request"},
		{"offset past end", func(c logv1connect.LogServiceClient) error {
			_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: 100})
			return err
		}, connect.CodeOutOfRange, "the next offset is 100"},
		{"offset far past end", func(c logv1connect.LogServiceClient) error {
			_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: 1 << 60})
			return err
		}, connect.CodeOutOfRange, "the next offset is 100"},
		{"stream from past end", func(c logv1connect.LogServiceClient) error {
			return consumeOne(ctx, c, &logv1.ConsumeStreamRequest{Offset: 101})
		}, connect.CodeOutOfRange, "the next offset is 100"},
		{"offset below lowest", func(c logv1connect.LogServiceClient) error {
			_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: 0})
			return err
		}, connect.CodeOutOfRange, "the lowest offset is " + itoa(lowest)},
		{"stream from below lowest", func(c logv1connect.LogServiceClient) error {
			return consumeOne(ctx, c, &logv1.ConsumeStreamRequest{Offset: 0})
		}, connect.CodeOutOfRange, "the lowest offset is " + itoa(lowest)},
	}
	for _, proto := range protocols {
		client := e.client(idRoot, proto.opts...)
		for _, tt := range tests {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				_, before := e.log.Bounds()
				err := tt.call(client)
				if codeOf(err) != tt.code {
					t.Fatalf("got %v, want code %v", err, tt.code)
				}
				if !strings.Contains(err.Error(), tt.message) {
					t.Fatalf("message %q lacks %q", err, tt.message)
				}
				if _, after := e.log.Bounds(); after != before {
					t.Fatalf("the log grew from %d to %d", before, after)
				}
			})
		}
	}

	// The stream starts at the lowest offset that is still there.
	if err := consumeOne(ctx, root, &logv1.ConsumeStreamRequest{Offset: lowest}); err != nil {
		t.Fatal(err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// produceStream sends one request and returns how the stream ended.
func produceStream(ctx context.Context, c logv1connect.LogServiceClient, req *logv1.ProduceStreamRequest) error {
	s, err := c.ProduceStream(ctx)
	if err != nil {
		return err
	}
	defer s.CloseResponse()
	if err := s.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseRequest(); err != nil {
		return err
	}
	if _, err := s.Receive(); err != nil {
		return err
	}
	return errors.New("request acknowledged")
}

func consumeOne(ctx context.Context, c logv1connect.LogServiceClient, req *logv1.ConsumeStreamRequest) error {
	s, err := c.ConsumeStream(ctx, req)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Receive() {
		return nil
	}
	return s.Err()
}

// Garbage where a protobuf message should be is InvalidArgument, in every
// protocol, and never reaches the log.
func TestMalformedBody(t *testing.T) {
	e := newEnv(t, envOptions{})
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			opts := append([]connect.ClientOption{connect.WithCodec(rawCodec{})}, proto.opts...)
			client := connect.NewClient[[]byte, []byte](e.httpClient(idRoot, false, nil), e.url+logv1connect.LogServiceProduceProcedure, opts...)
			_, err := client.CallUnary(t.Context(), connect.NewRequest(&garbage))
			if codeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
	t.Run("raw POST", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+logv1connect.LogServiceProduceProcedure, bytes.NewReader(garbage))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/proto")
		resp, err := e.httpClient(idRoot, false, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Code string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest || body.Code != "invalid_argument" {
			t.Fatalf("status %d, code %q", resp.StatusCode, body.Code)
		}
	})
	if _, next := e.log.Bounds(); next != 0 {
		t.Fatalf("garbage reached the log: next offset %d", next)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, envOptions{insecure: true})
	policy := allowAll{}
	for _, tt := range []struct {
		name string
		cfg  service.Config
	}{
		{"no log", service.Config{Authorizer: policy}},
		{"no authorizer", service.Config{Log: e.log}},
		{"message below record limit", service.Config{Log: e.log, Authorizer: policy, MaxRecordBytes: 2048, MaxMessageBytes: 1024}},
		{"negative limit", service.Config{Log: e.log, Authorizer: policy, MaxRecordBytes: -1}},
	} {
		if _, err := service.New(tt.cfg); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
	// A record limit above the default message limit raises the latter.
	if _, err := service.New(service.Config{Log: e.log, Authorizer: policy, MaxRecordBytes: 16 << 20}); err != nil {
		t.Errorf("large record limit: %v", err)
	}
}

type allowAll struct{}

func (allowAll) Allowed(string, string, string) bool { return true }
func (allowAll) AllowedAny(string, string) bool      { return true }
func (allowAll) AllowedCluster(string, string) bool  { return true }
func (allowAll) Actions(string) []string             { return []string{"produce", "consume", "admin"} }
func (allowAll) ActionsOn(string, string) []string   { return []string{"produce", "consume", "admin"} }

// A request may carry at most 65536 records, however small: each costs
// the log a frame. A stream whose pending requests hold more than that
// between them is split over several writes, acknowledged in order.
func TestRecordCountLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	client := e.client(idRoot, connect.WithGRPC())
	batch := func(n int) []*logv1.Record {
		records := make([]*logv1.Record, n)
		for i := range records {
			records[i] = &logv1.Record{}
		}
		return records
	}
	if _, err := client.ProduceBatch(t.Context(), &logv1.ProduceBatchRequest{Records: batch(1<<16 + 1)}); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("65537 records: %v", err)
	}
	if err := produceStream(t.Context(), client, &logv1.ProduceStreamRequest{Records: batch(1<<16 + 1)}); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("65537 records in a stream: %v", err)
	}
	if resp, err := client.ProduceBatch(t.Context(), &logv1.ProduceBatchRequest{Records: batch(1 << 16)}); err != nil || resp.GetCount() != 1<<16 {
		t.Fatalf("65536 records: %v, %v", resp, err)
	}

	stream, err := client.ProduceStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseResponse()
	sizes := []int{40000, 40000, 1, 60000, 30000}
	for _, n := range sizes {
		if err := stream.Send(&logv1.ProduceStreamRequest{Records: batch(n)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	want := uint64(1 << 16)
	for i, n := range sizes {
		ack, err := stream.Receive()
		if err != nil || ack.GetOffset() != want || int(ack.GetCount()) != n {
			t.Fatalf("ack %d: %v, %v; want offset %d count %d", i, ack, err, want, n)
		}
		want += uint64(n)
	}
	if _, next := e.log.Bounds(); next != want {
		t.Fatalf("log holds %d records, want %d", next, want)
	}
}
