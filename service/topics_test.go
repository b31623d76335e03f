package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/proglog/proglog/catalog"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
)

// keyFor returns a key that PartitionForKey maps to partition p of n.
func keyFor(t *testing.T, p, n int) string {
	t.Helper()
	for i := range 10000 {
		k := fmt.Sprintf("key-%d", i)
		if catalog.PartitionForKey([]byte(k), n) == p {
			return k
		}
	}
	t.Fatalf("no key for partition %d of %d", p, n)
	return ""
}

// readValue reads the value at offset of a log, failing the test if the
// record is not there.
func readValue(t *testing.T, l *logstore.Log, offset uint64) string {
	t.Helper()
	r, err := l.Read(context.Background(), offset)
	if err != nil {
		t.Fatalf("offset %d: %v", offset, err)
	}
	return string(r.Value)
}

func wantCode(t *testing.T, what string, err error, code connect.Code, inMessage ...string) {
	t.Helper()
	if codeOf(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
	for _, s := range inMessage {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("%s: message %q does not say %q", what, err, s)
		}
	}
}

// The partition of a produce: the one named; else the keyed records' keys'
// (murmur2, as Kafka); else a round robin over the topic's partitions. A
// request goes to one partition.
func TestProducePartitionChoice(t *testing.T) {
	e, tt := newTopicsEnv(t, envOptions{}, func(tt *testTopics) {
		tt.add("orders", 4, catalog.Config{}, nil)
		tt.add("spread", 3, catalog.Config{}, nil)
	})
	c := e.client(idRoot)
	ctx := t.Context()

	p, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(2), Record: keyed("k", "named")})
	if err != nil || p.GetPartition() != 2 || p.GetOffset() != 0 || readValue(t, tt.log("orders", 2), 0) != "named" {
		t.Fatalf("named partition: %v, %v", p, err)
	}

	seen := map[uint32]bool{}
	for i := range 20 {
		k := fmt.Sprintf("customer-%d", i)
		p, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: keyed(k, k)})
		if err != nil || int(p.GetPartition()) != catalog.PartitionForKey([]byte(k), 4) {
			t.Fatalf("key %q: %v, %v; want partition %d", k, p, err, catalog.PartitionForKey([]byte(k), 4))
		}
		if got := readValue(t, tt.log("orders", int(p.GetPartition())), p.GetOffset()); got != k {
			t.Fatalf("key %q: partition %d holds %q at %d", k, p.GetPartition(), got, p.GetOffset())
		}
		seen[p.GetPartition()] = true
	}
	if len(seen) < 2 {
		t.Fatalf("20 keys all went to %v", seen)
	}

	// Keyless: round robin, a batch to one partition, streams too.
	for i := range 4 {
		p, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "spread", Record: rec("rr")})
		if err != nil || p.GetPartition() != uint32(i%3) {
			t.Fatalf("keyless produce %d: %v, %v", i, p, err)
		}
	}
	b, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "spread", Records: []*logv1.Record{rec("b0"), rec("b1")}})
	if err != nil || b.GetPartition() != 1 || b.GetCount() != 2 || readValue(t, tt.log("spread", 1), b.GetBaseOffset()+1) != "b1" {
		t.Fatalf("keyless batch: %v, %v", b, err)
	}

	// A batch's keyless records follow its keyed ones; keys that map to
	// different partitions are refused, nothing written.
	k1, k3 := keyFor(t, 1, 4), keyFor(t, 3, 4)
	b, err = c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "orders", Records: []*logv1.Record{rec("loose"), keyed(k3, "a"), keyed(k3, "b")}})
	if err != nil || b.GetPartition() != 3 || readValue(t, tt.log("orders", 3), b.GetBaseOffset()) != "loose" {
		t.Fatalf("batch keyed to 3: %v, %v", b, err)
	}
	_, next := tt.log("orders", 1).Bounds()
	_, err = c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "orders", Records: []*logv1.Record{keyed(k1, "a"), rec("x"), keyed(k3, "b")}})
	wantCode(t, "mixed keys", err, connect.CodeInvalidArgument, "different partitions", `"orders"`)
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("mixed keys: outcome %v", appendOutcome(t, err))
	}
	if _, after := tt.log("orders", 1).Bounds(); after != next {
		t.Fatal("a refused batch was written")
	}
	// Named, the partition wins over the keys.
	b, err = c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "orders", Partition: proto.Uint32(0), Records: []*logv1.Record{keyed(k1, "a"), keyed(k3, "b")}})
	if err != nil || b.GetPartition() != 0 {
		t.Fatalf("named partition over keys: %v, %v", b, err)
	}

	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(4), Record: rec("x")})
	wantCode(t, "partition 4", err, connect.CodeNotFound, `topic "orders" partition 4`, "4 partitions")
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("partition 4: outcome %v", appendOutcome(t, err))
	}
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "nope", Record: rec("x")})
	wantCode(t, "unknown topic", err, connect.CodeNotFound, `"nope"`)
	_, err = c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 9})
	wantCode(t, "consume partition 9", err, connect.CodeNotFound, "4 partitions")
	_, err = c.GetStats(ctx, &logv1.GetStatsRequest{Topic: "nope"})
	wantCode(t, "stats of an unknown topic", err, connect.CodeNotFound, `"nope"`)

	// A stream's requests each go to their own topic and partition.
	stream, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*logv1.ProduceStreamRequest{
		{Topic: "orders", Partition: proto.Uint32(1), Record: rec("s0")},
		{Topic: "orders", Records: []*logv1.Record{keyed(k3, "s1"), rec("s2")}},
		{Record: rec("s3")},
		{Topic: "spread", Record: rec("s4")}, // the round robin's next: 2
		{Topic: "orders", Partition: proto.Uint32(1), Record: rec("s5")},
	}
	want := []uint32{1, 3, 0, 2, 1}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		ack, err := stream.Receive()
		if err != nil || ack.GetPartition() != want[i] {
			t.Fatalf("ack %d: %v, %v; want partition %d", i, ack, err, want[i])
		}
		topic := r.GetTopic()
		if topic == "" {
			topic = catalog.DefaultTopic
		}
		var l *logstore.Log
		if topic == catalog.DefaultTopic {
			l = e.log
		} else {
			l = tt.log(topic, int(ack.GetPartition()))
		}
		if got := readValue(t, l, ack.GetOffset()); got != fmt.Sprintf("s%d", map[int]int{0: 0, 1: 1, 2: 3, 3: 4, 4: 5}[i]) {
			t.Fatalf("ack %d: %q at %s/%d:%d", i, got, topic, ack.GetPartition(), ack.GetOffset())
		}
	}
	if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	_ = stream.CloseResponse()

	// A stream request with keys for two partitions ends the stream.
	stream, err = c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&logv1.ProduceStreamRequest{Topic: "orders", Records: []*logv1.Record{keyed(k1, "a"), keyed(k3, "b")}})
	_ = stream.CloseRequest()
	_, err = stream.Receive()
	wantCode(t, "stream with mixed keys", err, connect.CodeInvalidArgument, "different partitions")
	_ = stream.CloseResponse()

	// Reads name their partition.
	got, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 2})
	if err != nil || string(got.GetRecord().GetValue()) != "named" {
		t.Fatalf("consume orders/2: %v, %v", got, err)
	}
	cs, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: "orders", Partition: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Receive() || string(cs.Msg().GetRecord().GetValue()) != "named" {
		t.Fatalf("stream orders/2: %v, %v", cs.Msg(), cs.Err())
	}
	_ = cs.Close()
	st, err := c.GetStats(ctx, &logv1.GetStatsRequest{Topic: "spread", Partition: 1})
	if _, next := tt.log("spread", 1).Bounds(); err != nil || st.GetNextOffset() != next {
		t.Fatalf("stats of spread/1: %v, %v; want next %d", st, err, next)
	}
}

// A topic's max_record_bytes lowers the node's limit for its records.
func TestTopicMaxRecordBytes(t *testing.T) {
	e, _ := newTopicsEnv(t, envOptions{}, func(tt *testTopics) {
		tt.add("small", 2, catalog.Config{MaxRecordBytes: 100}, nil)
	})
	c := e.client(idRoot)
	ctx := t.Context()
	big := &logv1.Record{Value: make([]byte, 101)}
	_, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "small", Record: big})
	wantCode(t, "101 bytes to small", err, connect.CodeInvalidArgument, "limit of 100 bytes")
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("outcome %v", appendOutcome(t, err))
	}
	_, err = c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "small", Records: []*logv1.Record{rec("ok"), big}})
	wantCode(t, "batch to small", err, connect.CodeInvalidArgument, "record 1 of 101 bytes", "limit of 100 bytes")
	if _, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "small", Record: &logv1.Record{Value: make([]byte, 100)}}); err != nil {
		t.Fatalf("100 bytes to small: %v", err)
	}
	if _, err := c.Produce(ctx, &logv1.ProduceRequest{Record: big}); err != nil {
		t.Fatalf("101 bytes to default: %v", err)
	}
	stream, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&logv1.ProduceStreamRequest{Topic: "small", Record: big})
	_ = stream.CloseRequest()
	_, err = stream.Receive()
	wantCode(t, "stream to small", err, connect.CodeInvalidArgument, "limit of 100 bytes")
	_ = stream.CloseResponse()
}

const ordersPolicy = `
p, root, *, *
p, orders-app, orders.*, produce
p, orders-app, orders.*, consume
p, anonymous, public, consume
`

// The ACL applies per topic: orders-app may produce and consume on
// orders.* only. Callers no rule lets do anything of the kind are refused
// before the body is read.
func TestTopicACL(t *testing.T) {
	e, tt := newTopicsEnv(t, envOptions{policy: ordersPolicy}, func(tt *testTopics) {
		tt.add("orders.eu", 2, catalog.Config{}, nil)
		tt.add("payments", 1, catalog.Config{}, nil)
		tt.add("public", 1, catalog.Config{}, nil)
	})
	ctx := t.Context()
	c := e.client(idOrders)
	if _, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders.eu", Record: rec("o")}); err != nil {
		t.Fatalf("produce to orders.eu: %v", err)
	}
	if _, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders.eu", Partition: 0}); err != nil {
		t.Fatalf("consume orders.eu: %v", err)
	}
	if _, err := c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "orders.eu"}); err != nil {
		t.Fatalf("describe orders.eu: %v", err)
	}
	const deniedPayments = `subject "orders-app" may not`
	_, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "payments", Records: []*logv1.Record{rec("p")}})
	wantCode(t, "produce to payments", err, connect.CodePermissionDenied, deniedPayments, `"payments"`)
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("outcome %v", appendOutcome(t, err))
	}
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Record: rec("p")})
	wantCode(t, "produce to default", err, connect.CodePermissionDenied, `"default"`)
	_, err = c.Consume(ctx, &logv1.ConsumeRequest{Topic: "payments"})
	wantCode(t, "consume payments", err, connect.CodePermissionDenied, `"payments"`)
	_, err = c.GetStats(ctx, &logv1.GetStatsRequest{Topic: "payments"})
	wantCode(t, "stats of payments", err, connect.CodePermissionDenied, `"payments"`)
	_, err = c.GetOffsetForTime(ctx, &logv1.GetOffsetForTimeRequest{Topic: "payments"})
	wantCode(t, "offset for time in payments", err, connect.CodePermissionDenied, `"payments"`)
	_, err = c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "payments"})
	wantCode(t, "describe payments", err, connect.CodePermissionDenied, `"payments"`)
	cs, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Receive() {
		t.Fatal("streamed payments")
	}
	wantCode(t, "stream payments", cs.Err(), connect.CodePermissionDenied, `"payments"`)
	_ = cs.Close()
	// No admin rule anywhere: refused by path.
	_, err = c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders.us"})
	wantCode(t, "create orders.us", err, connect.CodePermissionDenied, `may not "admin"`)

	list, err := c.ListTopics(ctx, &logv1.ListTopicsRequest{})
	if err != nil || len(list.GetTopics()) != 1 || list.GetTopics()[0].GetName() != "orders.eu" {
		t.Fatalf("orders-app's topics: %v, %v", list, err)
	}
	who, err := c.WhoAmI(ctx, &logv1.WhoAmIRequest{})
	if err != nil || strings.Join(who.GetActions(), ",") != "produce,consume" {
		t.Fatalf("WhoAmI: %v, %v", who, err)
	}

	// A stream's requests are each checked on their topic.
	stream, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&logv1.ProduceStreamRequest{Topic: "orders.eu", Record: rec("s0")})
	if ack, err := stream.Receive(); err != nil {
		t.Fatalf("stream to orders.eu: %v, %v", ack, err)
	}
	_ = stream.Send(&logv1.ProduceStreamRequest{Topic: "orders.eu", Record: rec("s1")})
	_ = stream.Send(&logv1.ProduceStreamRequest{Topic: "payments", Record: rec("s2")})
	_ = stream.CloseRequest()
	if _, err := stream.Receive(); err != nil {
		t.Fatalf("second request: %v", err)
	}
	_, err = stream.Receive()
	wantCode(t, "stream to payments", err, connect.CodePermissionDenied, `"payments"`)
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("outcome %v", appendOutcome(t, err))
	}
	_ = stream.CloseResponse()
	if _, next := tt.log("payments", 0).Bounds(); next != 0 {
		t.Fatalf("payments holds %d records", next)
	}

	// Anonymous may consume public only; refused elsewhere in the
	// handler (it passed the by-path check), and refused producing by
	// path, before its garbage body is decoded. The stranger, with no
	// rule, likewise; root's garbage is decoded and refused as such.
	anon := e.client(idNone)
	if _, err := anon.GetStats(ctx, &logv1.GetStatsRequest{Topic: "public"}); err != nil {
		t.Fatalf("anonymous stats of public: %v", err)
	}
	_, err = anon.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders.eu"})
	wantCode(t, "anonymous consume orders.eu", err, connect.CodeUnauthenticated, `"orders.eu"`)
	list, err = anon.ListTopics(ctx, &logv1.ListTopicsRequest{})
	if err != nil || len(list.GetTopics()) != 1 || list.GetTopics()[0].GetName() != "public" {
		t.Fatalf("anonymous's topics: %v, %v", list, err)
	}
	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	for _, tc := range []struct {
		id   string
		want connect.Code
	}{
		{idNone, connect.CodeUnauthenticated},
		{idStranger, connect.CodePermissionDenied},
		{idRoot, connect.CodeInvalidArgument},
	} {
		for _, procedure := range []string{logv1connect.LogServiceProduceProcedure, logv1connect.LogServiceCreateTopicProcedure} {
			raw := connect.NewClient[[]byte, []byte](e.httpClient(tc.id, false, nil), e.url+procedure, connect.WithCodec(rawCodec{}))
			_, err := raw.CallUnary(ctx, connect.NewRequest(&garbage))
			wantCode(t, tc.id+" garbage to "+procedure, err, tc.want)
		}
	}
}
