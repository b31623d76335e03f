package service

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

// protobufProduce is what a request means by protobuf's rules: protobuf-go
// decodes it (no vtprotobuf, no protocodec) and fromProto takes its
// records. ok is false when protobuf-go refuses it.
func protobufProduce(data []byte) (produceRequest, bool) {
	var m logv1.ProduceStreamRequest
	if err := proto.Unmarshal(data, &m); err != nil {
		return produceRequest{}, false
	}
	return fromProto(&m, nil, new([]logstore.Header)), true
}

func sameProduce(a, b produceRequest) error {
	switch {
	case a.topic != b.topic:
		return fmt.Errorf("topic %q, want %q", a.topic, b.topic)
	case a.hasPart != b.hasPart || a.part != b.part:
		return fmt.Errorf("partition %v/%d, want %v/%d", a.hasPart, a.part, b.hasPart, b.part)
	case a.single != b.single:
		return fmt.Errorf("single %v, want %v", a.single, b.single)
	case len(a.recs) != len(b.recs):
		return fmt.Errorf("%d records, want %d", len(a.recs), len(b.recs))
	}
	for i := range a.recs {
		r, w := &a.recs[i], &b.recs[i]
		if !bytes.Equal(r.Value, w.Value) || !bytes.Equal(r.Key, w.Key) || len(r.Headers) != len(w.Headers) {
			return fmt.Errorf("record %d: %+v, want %+v", i, *r, *w)
		}
		if cap(r.Value) != len(r.Value) || cap(r.Key) != len(r.Key) {
			return fmt.Errorf("record %d: value or key not clipped", i)
		}
		for j := range r.Headers {
			if r.Headers[j].Key != w.Headers[j].Key || !bytes.Equal(r.Headers[j].Value, w.Headers[j].Value) {
				return fmt.Errorf("record %d header %d: %+v, want %+v", i, j, r.Headers[j], w.Headers[j])
			}
		}
	}
	return nil
}

func marshalProduce(t testing.TB, m *logv1.ProduceStreamRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyedRecord(v, k string, hs ...string) *logv1.Record {
	r := &logv1.Record{Value: []byte(v), Key: []byte(k)}
	for i := 0; i+1 < len(hs); i += 2 {
		r.Headers = append(r.Headers, &logv1.Header{Key: hs[i], Value: []byte(hs[i+1])})
	}
	return r
}

// rawField appends field num of wire type typ with value v (bytes or a
// varint) as it comes: for encodings protobuf-go would not write.
func rawField(b []byte, num protowire.Number, typ protowire.Type, v any) []byte {
	b = protowire.AppendTag(b, num, typ)
	switch v := v.(type) {
	case []byte:
		return protowire.AppendBytes(b, v)
	case uint64:
		return protowire.AppendVarint(b, v)
	}
	panic("rawField: bad value")
}

// produceCases are requests decodeProduce decodes itself (fast) and ones
// it leaves to protobuf (!fast); every one means the same either way.
func produceCases(t testing.TB) []struct {
	name string
	data []byte
	fast bool
} {
	many := &logv1.Record{Value: []byte("v")}
	for range maxHeaders + 1 {
		many.Headers = append(many.Headers, &logv1.Header{Key: "k"})
	}
	tsUnknown := rawField(rawField(nil, 1, protowire.VarintType, uint64(5)), 9, protowire.VarintType, uint64(1))
	recWithTime := func(ts []byte) []byte {
		return rawField(rawField(nil, 1, protowire.BytesType, []byte("v")), 5, protowire.BytesType, ts)
	}
	return []struct {
		name string
		data []byte
		fast bool
	}{
		{"empty request", nil, true},
		{"single record", marshalProduce(t, &logv1.ProduceStreamRequest{Record: keyedRecord("value", "key", "h", "x")}), true},
		{"empty single record", marshalProduce(t, &logv1.ProduceStreamRequest{Record: &logv1.Record{}}), true},
		{"batch", marshalProduce(t, &logv1.ProduceStreamRequest{Records: []*logv1.Record{
			keyedRecord("a", ""), keyedRecord("b", "kb", "h1", "1", "h1", "2"), keyedRecord("", "", "only", ""),
		}}), true},
		{"records win over record", marshalProduce(t, &logv1.ProduceStreamRequest{Record: keyedRecord("single", ""), Records: []*logv1.Record{keyedRecord("batch", "")}}), true},
		{"topic and partition", marshalProduce(t, &logv1.ProduceStreamRequest{Topic: "orders", Partition: proto.Uint32(7), Records: []*logv1.Record{keyedRecord("a", "k")}}), true},
		{"partition zero is set", marshalProduce(t, &logv1.ProduceStreamRequest{Partition: proto.Uint32(0), Record: keyedRecord("a", "")}), true},
		{"offset and time ignored", marshalProduce(t, &logv1.ProduceStreamRequest{Records: []*logv1.Record{{Value: []byte("v"), Offset: 99, Time: timestamppb.New(timestamppb.Now().AsTime())}}}), true},
		{"large value", marshalProduce(t, &logv1.ProduceStreamRequest{Record: &logv1.Record{Value: bytes.Repeat([]byte("x"), 300), Key: bytes.Repeat([]byte("k"), 200)}}), true},
		{"unknown fields at every level", rawField(rawField(nil, 2, protowire.BytesType,
			rawField(rawField(rawField(nil, 1, protowire.BytesType, []byte("v")), 9, protowire.VarintType, uint64(3)),
				4, protowire.BytesType, rawField(rawField(nil, 1, protowire.BytesType, []byte("hk")), 7, protowire.BytesType, []byte("junk")))),
			15, protowire.BytesType, []byte("unknown")), true},
		{"last value wins", rawField(nil, 2, protowire.BytesType,
			rawField(rawField(nil, 1, protowire.BytesType, []byte("first")), 1, protowire.BytesType, []byte("second"))), true},
		{"partition truncated to 32 bits", rawField(nil, 4, protowire.VarintType, uint64(1<<32+5)), true},
		{"two record fields merge", rawField(rawField(nil, 1, protowire.BytesType, rawField(nil, 1, protowire.BytesType, []byte("v"))),
			1, protowire.BytesType, rawField(nil, 3, protowire.BytesType, []byte("k"))), false},
		{"known field in another wire type", rawField(rawField(nil, 3, protowire.VarintType, uint64(1)), 2, protowire.BytesType, []byte{}), false},
		{"record field in another wire type", rawField(nil, 2, protowire.BytesType, rawField(nil, 1, protowire.VarintType, uint64(1))), false},
		{"topic not UTF-8", rawField(nil, 3, protowire.BytesType, []byte{0xff}), false},
		{"header key not UTF-8", rawField(nil, 2, protowire.BytesType, rawField(nil, 4, protowire.BytesType, rawField(nil, 1, protowire.BytesType, []byte{0xc3}))), false},
		{"time with an unknown field", rawField(nil, 2, protowire.BytesType, recWithTime(tsUnknown)), false},
		{"time of seconds", rawField(nil, 2, protowire.BytesType, recWithTime(rawField(nil, 1, protowire.VarintType, uint64(5)))), true},
		{"tag in two bytes", []byte{0x92, 0x00, 0x00}, false},
		{"field 20, two-byte tag", rawField(nil, 20, protowire.VarintType, uint64(1)), false},
		{"too many headers", marshalProduce(t, &logv1.ProduceStreamRequest{Record: many}), false},
		{"truncated", marshalProduce(t, &logv1.ProduceStreamRequest{Record: keyedRecord("value", "key")})[:5], false},
		{"field zero", []byte{0x02, 0x00}, false},
		{"length not minimal", []byte{0x12, 0x82, 0x00, 0x0a, 0x00}, false},
	}
}

// TestDecodeProduce: decodeProduce decodes plain encodings itself and
// means what protobuf means by them; it leaves the rest to protobuf.
func TestDecodeProduce(t *testing.T) {
	for _, tc := range produceCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			slab := new([]logstore.Header)
			got, ok := decodeProduce(tc.data, make([]logstore.Record, 3), slab)
			if ok != tc.fast {
				t.Fatalf("decoded itself: %v, want %v", ok, tc.fast)
			}
			if !ok {
				return
			}
			want, valid := protobufProduce(tc.data)
			if !valid {
				t.Fatal("decoded what protobuf-go refuses")
			}
			if err := sameProduce(got, want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDecodeProduceReuse: a request decoded into the storage of the one
// before it holds nothing of it, and costs no allocation.
func TestDecodeProduceReuse(t *testing.T) {
	first := marshalProduce(t, &logv1.ProduceStreamRequest{Records: []*logv1.Record{
		keyedRecord("a", "ka", "h1", "1", "h2", "2"), keyedRecord("b", "kb", "h1", "1"),
	}})
	second := marshalProduce(t, &logv1.ProduceStreamRequest{Records: []*logv1.Record{keyedRecord("c", ""), keyedRecord("d", "kd")}})
	var recs []logstore.Record
	var slab []logstore.Header
	req, ok := decodeProduce(first, recs, &slab)
	if !ok {
		t.Fatal("first request not decoded")
	}
	recs, slab = req.recs, slab[:0]
	if req, ok = decodeProduce(second, recs, &slab); !ok {
		t.Fatal("second request not decoded")
	}
	want, _ := protobufProduce(second)
	if err := sameProduce(req, want); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		slab = slab[:0]
		req, _ = decodeProduce(first, req.recs, &slab)
	}); allocs != 0 {
		t.Fatalf("%v allocations per decode into reused storage", allocs)
	}
}

// FuzzDecodeProduce: whatever decodeProduce decodes itself, protobuf-go
// accepts, with the same records, topic and partition.
func FuzzDecodeProduce(f *testing.F) {
	for _, tc := range produceCases(f) {
		f.Add(tc.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeProduce(data, nil, new([]logstore.Header))
		if !ok {
			return
		}
		want, valid := protobufProduce(data)
		if !valid {
			t.Fatalf("decoded %x, which protobuf-go refuses", data)
		}
		if err := sameProduce(got, want); err != nil {
			t.Fatalf("%x: %v", data, err)
		}
	})
}

// TestCheckRecords: the limits a produced record is held to, named as
// the producer sent it.
func TestCheckRecords(t *testing.T) {
	hs := func(keys ...string) []logstore.Header {
		var out []logstore.Header
		for _, k := range keys {
			out = append(out, logstore.Header{Key: k})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		recs   []logstore.Record
		single bool
		limit  int
		size   int
		err    string
	}{
		{"fits", []logstore.Record{{Value: []byte("abc"), Key: []byte("k"), Headers: hs("h")}}, false, 100, 5, ""},
		{"single named record", []logstore.Record{{Headers: hs("")}}, true, 100, 0, "record: header 0 has an empty key"},
		{"batch names the index", []logstore.Record{{}, {Headers: hs("ok", "")}}, false, 100, 0, "record 1: header 1 has an empty key"},
		{"long header key", []logstore.Record{{Headers: hs(strings.Repeat("k", MaxHeaderKeyBytes+1))}}, false, 1 << 20, 0, "exceeds the limit of 256 bytes"},
		{"header key not UTF-8", []logstore.Record{{Headers: hs("\xff")}}, false, 100, 0, "not valid UTF-8"},
		{"too many headers", []logstore.Record{{Headers: make([]logstore.Header, maxHeaders+1)}}, true, 1 << 20, 0, "record has 1025 headers"},
		{"too large", []logstore.Record{{Value: make([]byte, 10), Key: []byte("k")}}, true, 10, 0, "record of 11 bytes"},
		{"too many records", make([]logstore.Record, maxBatchRecords+1), false, 100, 0, "batch of 65537 records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, err := checkRecords(tc.recs, tc.single, tc.limit)
			if tc.err == "" {
				if err != nil || size != tc.size {
					t.Fatalf("checkRecords = %d, %v; want %d, nil", size, err, tc.size)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("checkRecords error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// BenchmarkDecodeProduce: a stream request of 100 records of 100 B, with
// a 16 B key and two headers or without, into a reused arena's storage:
// decodeProduce against the path it replaced (protocodec's DecodeInto of
// the message, then its records as the log takes them).
func BenchmarkDecodeProduce(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		shape := "plain"
		if keyed {
			shape = "keyed"
		}
		var req logv1.ProduceStreamRequest
		for i := range 100 {
			r := &logv1.Record{Value: bytes.Repeat([]byte{'v'}, 100)}
			if keyed {
				r.Key = fmt.Appendf(nil, "%016d", i)
				r.Headers = []*logv1.Header{{Key: "content-type", Value: []byte("text/csv")}, {Key: "trace-parent", Value: []byte("00-abcde")}}
			}
			req.Records = append(req.Records, r)
		}
		data := marshalProduce(b, &req)
		b.Run("decodeProduce/"+shape, func(b *testing.B) {
			var a produceArena
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r, ok := decodeProduce(data, a.recs, &a.slab)
				if !ok {
					b.Fatal("not decoded")
				}
				a.recs = r.recs
				a.release()
			}
		})
		b.Run("protocodec/"+shape, func(b *testing.B) {
			var a produceArena
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				a.req.Record = nil
				if err := protocodec.DecodeInto(data, &a.req); err != nil {
					b.Fatal(err)
				}
				a.recs = fromProto(&a.req, a.recs, &a.slab).recs
				a.release()
			}
		})
	}
}
