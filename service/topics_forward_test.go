package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/service"
)

// peerOf is a Config.Peer whose Forwarder is set once the other node exists.
func peerOf(fwd *atomic.Pointer[service.Forwarder]) func(string) (logv1connect.LogServiceClient, bool) {
	return func(addr string) (logv1connect.LogServiceClient, bool) {
		if f := fwd.Load(); f != nil {
			return f.Client(addr)
		}
		return nil, false
	}
}

// twoNodes serves topic "orders" of 4 partitions from two real Services
// over TLS. a hosts partition 0; b hosts 1 and 3. Partition 2 is where
// their views are stale: a says b hosts it (leader unknown), b says a
// does. a reaches partition 3 through a dead address, then b. Each node
// forwards with a Forwarder holding the other's node certificate; neither
// ACL has a rule for the other node.
func twoNodes(t *testing.T) (a, b *env, at, bt *testTopics) {
	t.Helper()
	var fwdA, fwdB atomic.Pointer[service.Forwarder]
	b, bt = newTopicsEnv(t, envOptions{config: func(c *service.Config) {
		c.NodeID = "node-b"
		c.Peer = peerOf(&fwdB)
	}}, func(tt *testTopics) {
		tt.add("orders", 4, catalog.Config{}, map[int]*service.NotHostedError{0: nil, 2: nil})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	a, at = newTopicsEnv(t, envOptions{config: func(c *service.Config) {
		c.NodeID = "node-a"
		c.Peer = peerOf(&fwdA)
	}}, func(tt *testTopics) {
		tt.add("orders", 4, catalog.Config{}, map[int]*service.NotHostedError{
			1: {Topic: "orders", Partition: 1, Leader: b.addr, Addrs: []string{b.addr}},
			2: {Topic: "orders", Partition: 2, Addrs: []string{b.addr}},
			3: {Topic: "orders", Partition: 3, Leader: b.addr, Addrs: []string{gone, b.addr}},
		})
	})
	bt.setRemote("orders", 0, &service.NotHostedError{Topic: "orders", Partition: 0, Leader: a.addr, Addrs: []string{a.addr}})
	bt.setRemote("orders", 2, &service.NotHostedError{Topic: "orders", Partition: 2, Leader: a.addr, Addrs: []string{a.addr}})
	for _, n := range []struct {
		fwd      *atomic.Pointer[service.Forwarder]
		id, self string
		to       *env
	}{{&fwdA, "node-a", a.addr, b}, {&fwdB, "node-b", b.addr, a}} {
		f, err := service.NewForwarder(n.id, n.self, nodeTLS(t, n.to))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		n.fwd.Store(f)
	}
	return a, b, at, bt
}

// Requests for a partition another node hosts go there: produces to its
// leader, reads to a replica, ConsumeStream proxied; each names the
// partition this node chose, and none is forwarded twice.
func TestForwardNotHostedPartition(t *testing.T) {
	a, b, at, bt := twoNodes(t)
	ctx := t.Context()
	c := a.client(idRoot)

	p, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(1), Record: rec("f0")})
	if err != nil || p.GetPartition() != 1 || p.GetOffset() != 0 || readValue(t, bt.log("orders", 1), 0) != "f0" {
		t.Fatalf("produce to b's partition: %v, %v", p, err)
	}
	k1 := keyFor(t, 1, 4)
	p, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: keyed(k1, "f1")})
	if err != nil || p.GetPartition() != 1 || p.GetOffset() != 1 {
		t.Fatalf("keyed produce to b's partition: %v, %v", p, err)
	}
	bb, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Topic: "orders", Records: []*logv1.Record{rec("f2"), keyed(k1, "f3")}})
	if err != nil || bb.GetPartition() != 1 || bb.GetBaseOffset() != 2 || readValue(t, bt.log("orders", 1), 3) != "f3" {
		t.Fatalf("batch to b's partition: %v, %v", bb, err)
	}

	// A stream mixing a's partition and b's: acknowledged in order.
	stream, err := c.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*logv1.ProduceStreamRequest{
		{Topic: "orders", Partition: proto.Uint32(0), Record: rec("a0")},
		{Topic: "orders", Partition: proto.Uint32(1), Record: rec("f4")},
		{Topic: "orders", Partition: proto.Uint32(0), Records: []*logv1.Record{rec("a1"), rec("a2")}},
		{Topic: "orders", Records: []*logv1.Record{keyed(k1, "f5"), rec("f6")}},
	}
	want := [][3]uint64{{0, 0, 1}, {1, 4, 1}, {0, 1, 2}, {1, 5, 2}} // partition, offset, count
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseRequest()
	for i, w := range want {
		ack, err := stream.Receive()
		if err != nil || ack.GetPartition() != uint32(w[0]) || ack.GetOffset() != w[1] || ack.GetCount() != uint32(w[2]) {
			t.Fatalf("ack %d: %v, %v; want %v", i, ack, err, w)
		}
	}
	if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	_ = stream.CloseResponse()
	if readValue(t, at.log("orders", 0), 2) != "a2" || readValue(t, bt.log("orders", 1), 6) != "f6" {
		t.Fatal("the stream's records are not where its acknowledgements say")
	}

	// Reads of b's partition through a.
	got, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 1, Offset: 3})
	if err != nil || string(got.GetRecord().GetValue()) != "f3" {
		t.Fatalf("consume b's partition: %v, %v", got, err)
	}
	st, err := c.GetStats(ctx, &logv1.GetStatsRequest{Topic: "orders", Partition: 1})
	if err != nil || st.GetNodeId() != "node-b" || st.GetNextOffset() != 7 {
		t.Fatalf("stats of b's partition: %v, %v", st, err)
	}
	ot, err := c.GetOffsetForTime(ctx, &logv1.GetOffsetForTimeRequest{Topic: "orders", Partition: 1, Time: timestamppb.New(time.Unix(0, 0))})
	if err != nil || ot.GetOffset() != 0 || ot.GetTime() == nil {
		t.Fatalf("offset for time in b's partition: %v, %v", ot, err)
	}
	_, err = c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 1, Offset: 99})
	wantCode(t, "b's out of range", err, connect.CodeOutOfRange, "offset 99")
	// Partition 3 through a dead address, then b (a starts at a random
	// one): reads go on to the next replica when one cannot be reached.
	if _, err := b.client(idRoot).Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(3), Record: rec("p3")}); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		got, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 3})
		if err != nil || string(got.GetRecord().GetValue()) != "p3" {
			t.Fatalf("consume through a dead replica: %v, %v", got, err)
		}
	}

	// Stale views: a sends partition 2 to b, which does not send it on.
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(2), Record: rec("x")})
	wantCode(t, "second hop", err, connect.CodeUnavailable, "not hosted")
	if appendOutcome(t, err) != notApplied {
		t.Fatalf("second hop: outcome %v", appendOutcome(t, err))
	}
	_, err = c.Consume(ctx, &logv1.ConsumeRequest{Topic: "orders", Partition: 2})
	wantCode(t, "second hop read", err, connect.CodeUnavailable, "not hosted")

	// a checks its caller; b never sees the request.
	_, err = a.client(idReader).Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(1), Record: rec("x")})
	wantCode(t, "reader produce", err, connect.CodePermissionDenied)
	if _, next := bt.log("orders", 1).Bounds(); next != 7 {
		t.Fatalf("b's partition grew to %d", next)
	}
}

// A stream spread over a local partition and two another node leads,
// sent without waiting: the forwards of one partition overlap with the
// other's and with local appends, and may carry several requests each,
// yet every acknowledgement comes in request order and names where its
// records are, and each partition holds the stream's records for it in
// the order they were sent.
func TestForwardedStreamKeepsOrder(t *testing.T) {
	a, _, at, bt := twoNodes(t)
	stream, err := a.client(idRoot).ProduceStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseResponse()
	parts := []uint32{0, 1, 3, 1, 3, 3}
	const requests = 300
	sent := make([][]string, requests)
	for i := range requests {
		part := parts[i%len(parts)]
		req := &logv1.ProduceStreamRequest{Topic: "orders", Partition: proto.Uint32(part)}
		for j := range 1 + i%3 {
			v := fmt.Sprintf("p%d-r%d-%d", part, i, j)
			req.Records = append(req.Records, rec(v))
			sent[i] = append(sent[i], v)
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	next := map[uint32]uint64{}
	for i := range requests {
		ack, err := stream.Receive()
		if err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		part := parts[i%len(parts)]
		if ack.GetPartition() != part || ack.GetOffset() != next[part] || int(ack.GetCount()) != len(sent[i]) {
			t.Fatalf("ack %d: %v; want partition %d, offset %d, count %d", i, ack, part, next[part], len(sent[i]))
		}
		host := bt // a hosts partition 0, b the others
		if part == 0 {
			host = at
		}
		l := host.log("orders", int(part))
		for j, v := range sent[i] {
			if got := readValue(t, l, ack.GetOffset()+uint64(j)); got != v {
				t.Fatalf("partition %d offset %d: %q, want %q", part, ack.GetOffset()+uint64(j), got, v)
			}
		}
		next[part] += uint64(len(sent[i]))
	}
	if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
}

// A ConsumeStream of a partition another node hosts is proxied: the
// records there, then live ones, until the client leaves, which ends the
// peer's stream too; the peer's error ends the proxy with it.
func TestConsumeStreamProxy(t *testing.T) {
	a, b, _, _ := twoNodes(t)
	ctx := t.Context()
	produce := a.client(idRoot)
	var values []string // partition 1's
	put := func(t *testing.T, v string) {
		t.Helper()
		if _, err := produce.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Partition: proto.Uint32(1), Record: rec(v)}); err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	for i := range 3 {
		put(t, fmt.Sprintf("old%d", i))
	}
	tails := func(e *env) float64 { return gauge(t, e.reg, "proglog_service_live_tails") }
	for _, pr := range protocols {
		t.Run(pr.name, func(t *testing.T) {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := a.client(idReader, pr.opts...).ConsumeStream(sctx, &logv1.ConsumeStreamRequest{Topic: "orders", Partition: 1, FromEnd: true, Offset: 2})
			if err != nil {
				t.Fatal(err)
			}
			expect := func(want string) {
				t.Helper()
				if !stream.Receive() {
					t.Fatalf("stream ended: %v", stream.Err())
				}
				if got := string(stream.Msg().GetRecord().GetValue()); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			expect(values[len(values)-2])
			expect(values[len(values)-1])
			waitFor(t, "both tails to open", func() bool { return tails(a) == 1 && tails(b) == 1 })
			for _, v := range []string{"new-" + pr.name, "newer-" + pr.name} {
				put(t, v)
				expect(v)
			}
			cancel()
			if stream.Receive() {
				t.Fatal("received after cancelling")
			}
			_ = stream.Close()
			waitFor(t, "both tails to end", func() bool { return tails(a) == 0 && tails(b) == 0 })
		})
	}

	// Batches pass through as the peer sends them.
	stream, err := a.client(idRoot).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: "orders", Partition: 1, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || len(stream.Msg().GetRecords()) != 2 || string(stream.Msg().GetRecords()[0].GetValue()) != "old0" {
		t.Fatalf("batched proxy: %v, %v", stream.Msg(), stream.Err())
	}
	_ = stream.Close()

	// The peer's error is the proxy's.
	stream, err = a.client(idRoot).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: "orders", Partition: 1, Offset: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if stream.Receive() {
		t.Fatal("received past the end")
	}
	wantCode(t, "past the end", stream.Err(), connect.CodeOutOfRange, "offset 1000")
	_ = stream.Close()
	waitFor(t, "tails to end", func() bool { return tails(a) == 0 && tails(b) == 0 })
}

// Topic changes a follower's Topics refuses with *cluster.NotLeaderError go
// to the leader (whose ACL has no rule for the forwarding node), and no
// further.
func TestTopicChangesForwardToLeader(t *testing.T) {
	var forwardedOn atomic.Bool
	leader, lt := newTopicsEnv(t, envOptions{config: func(c *service.Config) {
		c.Forward = func(error) (logv1connect.LogServiceClient, bool) {
			forwardedOn.Store(true)
			return nil, false
		}
	}}, nil)
	fwd, err := service.NewForwarder("follower", "127.0.0.1:1", nodeTLS(t, leader))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	follower, ft := newTopicsEnv(t, envOptions{config: func(c *service.Config) { c.Forward = fwd.Forward }}, nil)
	ft.setChangeErr(&cluster.NotLeaderError{LeaderID: "leader", LeaderAddr: leader.addr})
	ctx := t.Context()
	c := follower.client(idRoot)

	created, err := c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 2})
	if err != nil || created.GetTopic().GetPartitions() != 2 {
		t.Fatalf("create through the follower: %v, %v", created, err)
	}
	if _, err := lt.Topic("orders"); err != nil {
		t.Fatalf("the leader has no orders: %v", err)
	}
	if _, err := ft.Topic("orders"); err == nil {
		t.Fatal("the follower created it itself")
	}
	_, err = c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders"})
	wantCode(t, "create again", err, connect.CodeAlreadyExists, `"orders"`)
	up, err := c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "orders", RetentionBytes: proto.Uint64(1 << 20)})
	if err != nil || up.GetTopic().GetConfig().GetRetentionBytes() != 1<<20 {
		t.Fatalf("update through the follower: %v, %v", up, err)
	}
	if _, err := c.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "orders"}); err != nil {
		t.Fatalf("delete through the follower: %v", err)
	}
	if _, err := lt.Topic("orders"); !errors.Is(err, catalog.ErrTopicNotFound) {
		t.Fatalf("the leader still has orders: %v", err)
	}
	// The follower checks its caller first.
	_, err = follower.client(idReader).CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "x"})
	wantCode(t, "reader creates", err, connect.CodePermissionDenied)

	// A leader that lost leadership meanwhile does not send it on.
	lt.setChangeErr(&cluster.NotLeaderError{LeaderID: "other", LeaderAddr: "127.0.0.1:1"})
	_, err = c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "again"})
	wantCode(t, "second hop", err, connect.CodeUnavailable, `"again"`)
	if forwardedOn.Load() {
		t.Fatal("the leader forwarded a forwarded change")
	}
}
