package service

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

// wantWire is what a stream sent for recs before consumeWire: toProto's
// messages, marshaled by protobuf-go (deterministic: fields in number
// order, as vtprotobuf writes them too).
func wantWire(t *testing.T, recs []logstore.Record, field int) []byte {
	t.Helper()
	var out []byte
	for i := range recs {
		var pb logv1.Record
		toProto(&recs[i], &pb)
		resp := &logv1.ConsumeStreamResponse{Records: []*logv1.Record{&pb}}
		if field == 1 {
			resp = &logv1.ConsumeStreamResponse{Record: &pb}
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestConsumeWire: a response encoded from the store's records is, byte
// for byte, protobuf-go's marshal of the messages toProto makes of them.
func TestConsumeWire(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		recs []logstore.Record
	}{
		{"bare value", []logstore.Record{{Offset: 7, Time: at, Value: []byte("hello")}}},
		{"offset zero, empty value", []logstore.Record{{Time: at}}},
		{"no time", []logstore.Record{{Offset: 1, Value: []byte("v")}}},
		{"whole second", []logstore.Record{{Offset: 2, Time: at.Truncate(time.Second), Value: []byte("v")}}},
		{"the epoch", []logstore.Record{{Offset: 3, Time: time.Unix(0, 0), Value: []byte("v")}}},
		{"before the epoch", []logstore.Record{{Offset: 4, Time: time.Unix(-86400, 5), Value: []byte("v")}}},
		{"largest offset", []logstore.Record{{Offset: math.MaxUint64, Time: at, Value: []byte("v")}}},
		{"key and headers", []logstore.Record{{Offset: 300, Time: at, Key: []byte("user-42"), Value: []byte("v"),
			Headers: []logstore.Header{{Key: "trace", Value: []byte("abc")}, {Key: "empty"}, {Key: "trace", Value: []byte("again")}}}}},
		{"headers only, empty value", []logstore.Record{{Offset: 9, Time: at, Headers: []logstore.Header{{Key: "k", Value: []byte{0}}}}}},
		{"long value", []logstore.Record{{Offset: 1 << 40, Time: at, Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("x"), 70000)}}},
		// Lengths are written after what they measure (putLength): each
		// size of length after another.
		{"sizes up and down", []logstore.Record{
			{Offset: 20, Value: []byte("a")},
			{Offset: 21, Value: bytes.Repeat([]byte("b"), 200)},
			{Offset: 22, Value: bytes.Repeat([]byte("c"), 20000)},
			{Offset: 23, Time: at, Headers: []logstore.Header{{Key: "big", Value: bytes.Repeat([]byte("h"), 300)}, {Key: "small"}}},
			{Offset: 24, Value: []byte("d")},
		}},
		{"several", []logstore.Record{
			{Offset: 10, Time: at, Value: []byte("a")},
			{Offset: 11, Time: at.Add(time.Nanosecond), Key: []byte("k"), Value: []byte("b")},
			{Offset: 12, Time: at.Add(time.Hour), Headers: []logstore.Header{{Key: "h", Value: []byte("v")}}, Value: []byte("c")},
		}},
	}
	for _, tt := range tests {
		for _, field := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s, field %d", tt.name, field), func(t *testing.T) {
				checkWire(t, tt.recs, field)
			})
		}
	}
}

// TestConsumeWireRandom is TestConsumeWire over random records.
func TestConsumeWireRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(max int) []byte {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for range 200 {
		recs := make([]logstore.Record, 1+rng.IntN(20))
		for i := range recs {
			r := &recs[i]
			r.Offset = rng.Uint64() >> rng.IntN(64)
			r.Value = blob(300)
			if rng.IntN(2) == 0 {
				r.Key = blob(40)
			}
			for range rng.IntN(4) {
				key := blob(20) // UTF-8, as the produce path checks
				for i := range key {
					key[i] = 'a' + key[i]%26
				}
				r.Headers = append(r.Headers, logstore.Header{Key: string(key), Value: blob(20)})
			}
			if rng.IntN(8) != 0 {
				r.Time = time.Unix(rng.Int64N(1<<36)-1<<35, rng.Int64N(1e9))
			}
		}
		checkWire(t, recs, 1+rng.IntN(2))
	}
}

func checkWire(t *testing.T, recs []logstore.Record, field int) {
	t.Helper()
	want := wantWire(t, recs, field)
	w := consumeWire{recs: recs, field: field}
	prefix := []byte("connect's buffer")
	got, err := protocodec.Codec{}.MarshalAppend(bytes.Clone(prefix), &w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("MarshalAppend overwrote dst's bytes: %q", got[:len(prefix)])
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("encoded %d records as\n%x\nwant\n%x", len(recs), got, want)
	}
}

// BenchmarkConsumeWire: a stream response of 1,000 records of 100 B, with
// a 16 B key and two headers or without, each with a time, encoded from
// the store's records into a reused buffer.
func BenchmarkConsumeWire(b *testing.B) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	for _, keyed := range []bool{false, true} {
		shape := "plain"
		if keyed {
			shape = "keyed"
		}
		recs := make([]logstore.Record, 1000)
		for i := range recs {
			r := &recs[i]
			r.Offset, r.Time, r.Value = 1<<20+uint64(i), at.Add(time.Duration(i)), bytes.Repeat([]byte{'v'}, 100)
			if keyed {
				r.Key = fmt.Appendf(nil, "%016d", i)
				r.Headers = []logstore.Header{{Key: "content-type", Value: []byte("text/csv")}, {Key: "trace-parent", Value: []byte("00-abcde")}}
			}
		}
		b.Run(shape, func(b *testing.B) {
			w := consumeWire{recs: recs, field: 2}
			buf, err := w.AppendProto(nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if buf, err = w.AppendProto(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
