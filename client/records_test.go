package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func TestValidateRecord(t *testing.T) {
	tests := []struct {
		name string
		rec  *logv1.Record
		want string // "" for valid
	}{
		{"value only", &logv1.Record{Value: []byte("v")}, ""},
		{"empty", &logv1.Record{}, ""},
		{"key and headers", &logv1.Record{Key: []byte{0xff}, Headers: []*logv1.Header{{Key: "a", Value: []byte{0xff}}, {Key: "a"}}}, ""},
		{"key of 256 bytes", &logv1.Record{Headers: []*logv1.Header{{Key: strings.Repeat("é", 128)}}}, ""},
		{"nil", nil, "nil record"},
		{"nil header", &logv1.Record{Headers: []*logv1.Header{{Key: "a"}, nil}}, "header 1 is nil"},
		{"empty header key", &logv1.Record{Headers: []*logv1.Header{{Value: []byte("v")}}}, "header 0 has an empty key"},
		{"not UTF-8", &logv1.Record{Headers: []*logv1.Header{{Key: "a\xffb"}}}, "not UTF-8"},
		{"257 bytes", &logv1.Record{Headers: []*logv1.Header{{Key: strings.Repeat("k", 257)}}}, "257 bytes, more than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := client.ValidateRecord(tt.rec)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, client.ErrInvalidRecord) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateRecord = %v, want ErrInvalidRecord saying %q", err, tt.want)
			}
		})
	}
}

// keyed returns n records with a key and headers, values v<from>...
func keyed(from, n int) []*logv1.Record {
	recs := make([]*logv1.Record, n)
	for i := range recs {
		recs[i] = &logv1.Record{
			Value: fmt.Appendf(nil, "v%d", from+i),
			Key:   fmt.Appendf(nil, "k%d", (from+i)%3),
			Headers: []*logv1.Header{
				{Key: "seq", Value: fmt.Appendf(nil, "%d", from+i)},
				{Key: "bin", Value: []byte{0, 0xff}},
				{Key: "seq", Value: nil}, // keys may repeat; order is kept
			},
		}
	}
	return recs
}

// sameRecord reports whether got is want as stored: the same value, key
// and headers (the server sets offset and time).
func sameRecord(got, want *logv1.Record) bool {
	g := proto.CloneOf(got)
	g.Offset, g.Time = 0, nil
	return proto.Equal(g, want)
}

func TestRecordsRoundTrip(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})

	before := time.Now()
	want := keyed(0, 10)
	base, err := c.ProduceRecords(t.Context(), want[:4])
	if err != nil || base != 0 {
		t.Fatalf("ProduceRecords = %d, %v", base, err)
	}
	prod, err := c.NewProducer(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	a1, err := prod.SendRecords(t.Context(), want[4])
	if err != nil {
		t.Fatal(err)
	}
	a2, err := prod.SendRecords(t.Context(), want[5:]...)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range []*client.Ack{a1, a2} {
		if off, err := a.Wait(t.Context()); err != nil || off != uint64(4+i) {
			t.Fatalf("ack %d = %d, %v", i, off, err)
		}
	}
	if err := prod.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	waitApplied(t, uint64(len(want)), nodes...)

	check := func(how string, got *logv1.Record, prev time.Time) time.Time {
		t.Helper()
		off := got.GetOffset()
		if !sameRecord(got, want[off]) {
			t.Fatalf("%s: offset %d = %v, want %v", how, off, got, want[off])
		}
		if got.GetTime() == nil {
			t.Fatalf("%s: offset %d has no time", how, off)
		}
		at := got.GetTime().AsTime()
		// The leader's clock is this machine's; a second covers any rounding.
		if at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)) || at.Before(prev) {
			t.Fatalf("%s: offset %d at %v: not within [%v, %v] or before the previous record's %v", how, off, at, before, after, prev)
		}
		return at
	}
	var prev time.Time
	for i := range uint64(len(want)) {
		rec, err := c.Consume(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		prev = check("Consume", rec, prev)
	}
	for _, reuse := range []bool{false, true} {
		opts := []client.TailOption{client.MaxBatch(3), client.Until(uint64(len(want)))}
		if reuse {
			opts = append(opts, client.ReuseRecords())
		}
		prev = time.Time{}
		n := 0
		var kept []*logv1.Record
		err = c.TailBatches(t.Context(), 0, func(recs []*logv1.Record) error {
			if len(recs) > 3 {
				return fmt.Errorf("a batch of %d records, over MaxBatch", len(recs))
			}
			for _, r := range recs {
				prev = check(fmt.Sprintf("Tail (reuse %v)", reuse), r, prev)
				n++
			}
			kept = append(kept, recs...)
			return nil
		}, opts...)
		if err != nil || n != len(want) {
			t.Fatalf("TailBatches (reuse %v) = %v after %d records, want nil after %d", reuse, err, n, len(want))
		}
		if reuse {
			continue // kept records were overwritten: ReuseRecords says so
		}
		for _, r := range kept {
			if !sameRecord(r, want[r.GetOffset()]) {
				t.Fatalf("a record kept after the tail: %v, want %v", r, want[r.GetOffset()])
			}
		}
	}
}

func TestInvalidRecordsAreNotSent(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	bad := []*logv1.Record{{Value: []byte("ok")}, {Value: []byte("v"), Headers: []*logv1.Header{{Key: ""}}}}
	if _, err := c.ProduceRecords(t.Context(), bad); !errors.Is(err, client.ErrInvalidRecord) || !strings.Contains(err.Error(), "record 1") {
		t.Errorf("ProduceRecords = %v, want ErrInvalidRecord naming record 1", err)
	}
	if _, err := c.ProduceRecords(t.Context(), nil); !errors.Is(err, client.ErrInvalidRecord) {
		t.Errorf("ProduceRecords(nil) = %v, want ErrInvalidRecord", err)
	}
	prod, err := c.NewProducer(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(t.Context())
	if _, err := prod.SendRecords(t.Context(), bad...); !errors.Is(err, client.ErrInvalidRecord) {
		t.Errorf("SendRecords = %v, want ErrInvalidRecord", err)
	}
	if _, err := prod.SendRecords(t.Context()); !errors.Is(err, client.ErrInvalidRecord) {
		t.Errorf("SendRecords() = %v, want ErrInvalidRecord", err)
	}
	for _, rpc := range []string{"ProduceBatch", "ProduceStream"} {
		if n := nodes[0].calls.count(rpc); n != 0 {
			t.Errorf("the server received %d %s calls", n, rpc)
		}
	}
}

func TestTailBatchesUntil(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	values := make([][]byte, 20)
	for i := range values {
		values[i] = fmt.Appendf(nil, "r%d", i)
	}
	if _, err := c.ProduceBatch(t.Context(), values); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		from     uint64
		opts     []client.TailOption
		want     []uint64 // offsets, in order
		maxBatch int
	}{
		{"range", 3, []client.TailOption{client.Until(11), client.MaxBatch(4)}, seq(3, 11), 4},
		{"to the end", 15, []client.TailOption{client.Until(20)}, seq(15, 20), client.DefaultMaxBatch},
		{"one at a time", 0, []client.TailOption{client.Until(3), client.MaxBatch(1)}, seq(0, 3), 1},
		{"range, records reused", 3, []client.TailOption{client.Until(11), client.MaxBatch(4), client.ReuseRecords()}, seq(3, 11), 4},
		{"one at a time, records reused", 0, []client.TailOption{client.Until(3), client.MaxBatch(1), client.ReuseRecords()}, seq(0, 3), 1},
		{"empty range", 7, []client.TailOption{client.Until(7)}, nil, 0},
		{"start past the end of the range", 9, []client.TailOption{client.Until(2)}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := c.TailBatches(t.Context(), tt.from, func(recs []*logv1.Record) error {
				if len(recs) == 0 || len(recs) > tt.maxBatch {
					return fmt.Errorf("a batch of %d records", len(recs))
				}
				for _, r := range recs {
					if want := fmt.Sprintf("r%d", r.GetOffset()); string(r.GetValue()) != want {
						return fmt.Errorf("offset %d holds %q", r.GetOffset(), r.GetValue())
					}
					got = append(got, r.GetOffset())
				}
				return nil
			}, tt.opts...)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("TailBatches = %v with %v, want nil with %v", err, got, tt.want)
			}
		})
	}
	t.Run("offset and time", func(t *testing.T) {
		err := c.Tail(t.Context(), 1, func(*logv1.Record) error { return nil }, client.FromTime(time.Now()))
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Fatalf("Tail from an offset and a time = %v", err)
		}
	})
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestTailResumeHookAndUntil stops the follower serving a bounded tail
// midway: the tail resumes elsewhere, says so, and still ends exactly at
// its bound.
func TestTailResumeHookAndUntil(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	if _, err := c.ProduceBatch(t.Context(), [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, 2, nodes...)
	var resumes []client.Resume // written by the tail, read once it returned
	got := make(chan string, 3)
	done := make(chan error, 1)
	go func() {
		done <- c.Tail(t.Context(), 0, func(r *logv1.Record) error { got <- string(r.GetValue()); return nil },
			client.Until(3), client.MaxBatch(1), client.OnResume(func(r client.Resume) { resumes = append(resumes, r) }))
	}()
	next := func(want string) {
		t.Helper()
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("tail delivered %q, want %q", v, want)
			}
		case err := <-done:
			t.Fatalf("tail ended before %q: %v", want, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("tail stuck before %q", want)
		}
	}
	next("a")
	next("b")
	serving := 0
	for _, f := range others(nodes, leader) {
		if f.calls.count("ConsumeStream") > 0 {
			f.stop(t) // the tail's server goes away mid-range
			serving++
		}
	}
	if serving != 1 {
		t.Fatalf("%d followers served the tail, want 1", serving)
	}
	if _, err := c.Produce(t.Context(), []byte("c")); err != nil {
		t.Fatal(err)
	}
	next("c")
	if err := <-done; err != nil {
		t.Fatalf("Tail until 3 = %v, want nil", err)
	}
	if len(resumes) == 0 {
		t.Fatal("OnResume was not called although the serving follower stopped")
	}
	for _, r := range resumes {
		if r.Next != 2 || r.Err == nil || r.Addr == "" || r.Wait <= 0 {
			t.Errorf("resume %+v, want one from offset 2 with its error, server and wait", r)
		}
	}
}

// TestTimes covers reads by time: OffsetForTime, ConsumeTime and a tail
// from a time, before, between and after the records.
func TestTimes(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	ctx := t.Context()

	start := time.Now()
	if _, err := c.ProduceBatch(ctx, [][]byte{[]byte("a0"), []byte("a1"), []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	if _, err := c.ProduceBatch(ctx, [][]byte{[]byte("b3"), []byte("b4")}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, 5, nodes...)
	// The offset each time should map to, by the times the records carry.
	var times []time.Time
	for i := range uint64(5) {
		rec, err := c.Consume(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, rec.GetTime().AsTime())
	}
	firstAtOrAfter := func(at time.Time) uint64 {
		for i, rt := range times {
			if !rt.Before(at) {
				return uint64(i)
			}
		}
		return uint64(len(times))
	}
	if firstAtOrAfter(mid) != 3 {
		t.Fatalf("record times %v do not put %v between offsets 2 and 3", times, mid)
	}
	future := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name string
		at   time.Time
		want uint64
	}{
		{"long ago", time.Unix(0, 0), 0},
		{"the start", start.Add(-time.Second), 0},
		{"exactly a record's time", times[1], firstAtOrAfter(times[1])}, // a batch may share one time
		{"a nanosecond later", times[1].Add(time.Nanosecond), firstAtOrAfter(times[1].Add(time.Nanosecond))},
		{"between", mid, 3},
		{"future", future, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off, at, err := c.OffsetForTime(ctx, tc.at)
			if err != nil || off != tc.want {
				t.Fatalf("OffsetForTime = %d, %v; want %d", off, err, tc.want)
			}
			if tc.want < 5 && !at.Equal(times[tc.want]) || tc.want == 5 && !at.IsZero() {
				t.Errorf("OffsetForTime's time = %v, want the record's", at)
			}
			rec, err := c.ConsumeTime(ctx, tc.at)
			switch {
			case tc.want == 5:
				if connect.CodeOf(err) != connect.CodeOutOfRange {
					t.Errorf("ConsumeTime after the last record = %v, %v; want OutOfRange", rec, err)
				}
			case err != nil || rec.GetOffset() != tc.want:
				t.Errorf("ConsumeTime = %v, %v; want offset %d", rec, err, tc.want)
			}
			var got []uint64
			err = c.Tail(ctx, 0, func(r *logv1.Record) error { got = append(got, r.GetOffset()); return nil },
				client.FromTime(tc.at), client.Until(5))
			if err != nil || !slices.Equal(got, seq(tc.want, 5)) {
				t.Errorf("Tail from the time until 5 = %v with %v, want %v", err, got, seq(tc.want, 5))
			}
		})
	}

	// From a time after every record: the tail follows what comes next.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tailed := make(chan *logv1.Record, 1)
	errStop := errors.New("stop")
	done := make(chan error, 1)
	go func() {
		done <- c.Tail(tctx, 0, func(r *logv1.Record) error { tailed <- r; return errStop }, client.FromTime(time.Now()))
	}()
	// The tail must be positioned before the record is produced; produce
	// until it sees one (a produce that lands first is not after its time).
	for {
		if _, err := c.Produce(ctx, []byte("later")); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-tailed:
			if !bytes.Equal(r.GetValue(), []byte("later")) || r.GetOffset() < 5 {
				t.Fatalf("a tail from now delivered %d:%q", r.GetOffset(), r.GetValue())
			}
			if err := <-done; !errors.Is(err, errStop) {
				t.Fatalf("Tail = %v", err)
			}
			return
		case err := <-done:
			t.Fatalf("Tail from now ended: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestStatsAndWhoAmI(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	if _, err := c.ProduceBatch(t.Context(), [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats(t.Context())
	if err != nil || st.GetNextOffset() != 2 || st.GetNodeId() != leader.id {
		t.Fatalf("Stats = %v, %v; want the leader's (%s) with next offset 2", st, err, leader.id)
	}
	for _, n := range nodes {
		st, err := c.ServerStats(t.Context(), n.addr)
		if err != nil || st.GetNodeId() != n.id {
			t.Fatalf("ServerStats(%s) = %v, %v; want node %s", n.addr, st, err, n.id)
		}
	}
	me, err := c.WhoAmI(t.Context())
	if err != nil || me.GetSubject() != "root" || !me.GetAuthenticated() {
		t.Fatalf("WhoAmI = %v, %v", me, err)
	}
	// A server that is gone is not replaced by another for ServerStats.
	gone := others(nodes, leader)[0]
	gone.stop(t)
	short := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...), Retries: 2})
	if st, err := short.ServerStats(t.Context(), gone.addr); err == nil {
		t.Fatalf("ServerStats of a stopped server = %v", st)
	}
}

// An Ordered producer stops at its first failure; the request the server
// refused fails with the server's answer, not an unknown outcome.
func TestOrderedProducerStopsAtFirstFailure(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	prod, err := c.NewProducer(t.Context(), 4, client.Ordered())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(t.Context())
	ok, err := prod.Send(t.Context(), []byte("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if off, err := ok.Wait(t.Context()); err != nil || off != 0 {
		t.Fatalf("ack = %d, %v", off, err)
	}
	big, err := prod.Send(t.Context(), bytes.Repeat([]byte("x"), 2<<20)) // over the 1 MiB default
	if err != nil {
		t.Fatal(err)
	}
	// Pipelined behind it: the server's answer (not applied) covers it too.
	behind, behindErr := prod.Send(t.Context(), []byte("behind"))
	_, err = big.Wait(t.Context())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("oversized record's ack = %v, want InvalidArgument without an unknown outcome", err)
	}
	if behindErr == nil {
		_, behindErr = behind.Wait(t.Context())
	}
	if connect.CodeOf(behindErr) != connect.CodeInvalidArgument || errors.Is(behindErr, client.ErrUnknownOutcome) {
		t.Fatalf("the request behind it: %v, want the same refusal, not an unknown outcome", behindErr)
	}
	if _, err := prod.Send(t.Context(), []byte("after")); err == nil || connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Send after the failure = %v, want the failure that stopped the producer", err)
	}
	if n := nodes[0].calls.count("ProduceStream"); n != 1 {
		t.Errorf("%d ProduceStream calls, want 1: an ordered producer opens no new stream", n)
	}
}

// TestRecordsOwnTheirBytes: the records Tail and Consume hand out point
// into one copy of their message; appending to one record's bytes must
// not write over another's, nor over the same record's other fields.
func TestRecordsOwnTheirBytes(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	if _, err := c.ProduceRecords(t.Context(), keyed(0, 5)); err != nil {
		t.Fatal(err)
	}
	var recs []*logv1.Record
	err := c.TailBatches(t.Context(), 0, func(batch []*logv1.Record) error {
		recs = append(recs, batch...)
		return nil
	}, client.Until(5))
	if err != nil {
		t.Fatal(err)
	}
	one, err := c.Consume(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, one)
	want := make([]*logv1.Record, len(recs))
	for i, r := range recs {
		want[i] = proto.Clone(r).(*logv1.Record)
	}
	junk := bytes.Repeat([]byte{'!'}, 64)
	for _, r := range recs {
		_ = append(r.Value, junk...)
		_ = append(r.Key, junk...)
		for _, h := range r.Headers {
			_ = append(h.Value, junk...)
		}
	}
	for i, r := range recs {
		if !proto.Equal(r, want[i]) {
			t.Errorf("record %d after appends to the records' bytes: %v, want %v", i, r, want[i])
		}
	}
}
