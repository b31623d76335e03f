package protocodec_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
)

// field appends field num of wire type typ with value v (bytes, a varint,
// or raw bytes after the tag) as it comes: for encodings protobuf-go would
// not write.
func field(b []byte, num protowire.Number, typ protowire.Type, v any) []byte {
	b = protowire.AppendTag(b, num, typ)
	switch v := v.(type) {
	case []byte:
		return protowire.AppendBytes(b, v)
	case string:
		return protowire.AppendBytes(b, []byte(v))
	case uint64:
		return protowire.AppendVarint(b, v)
	case raw:
		return append(b, v...)
	}
	panic("field: bad value")
}

// raw is a field's value as it goes on the wire, for field.
type raw []byte

// records is b as the elements of records, one per argument.
func records(rs ...[]byte) []byte {
	var b []byte
	for _, r := range rs {
		b = field(b, 2, protowire.BytesType, r)
	}
	return b
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type decodeCase struct {
	name string
	data []byte
	fast bool // Decode takes it itself, without the slow path
}

// decodeCases are responses Decode decodes by its fast path (fast) and
// ones it leaves to the slow path; either way the result is protobuf-go's.
func decodeCases(t testing.TB) []decodeCase {
	marshal := func(m proto.Message) []byte { return mustMarshal(t, m) }
	batch := func(rs ...*logv1.Record) []byte {
		return marshal(&logv1.ConsumeStreamResponse{Records: rs})
	}
	ts := func(sec int64, nanos int32) *timestamppb.Timestamp {
		return &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
	}
	rec := func(fields ...[]byte) []byte { return records(bytes.Join(fields, nil)) }
	value := field(nil, 1, protowire.BytesType, "v")
	offset := field(nil, 2, protowire.VarintType, uint64(7))
	key := field(nil, 3, protowire.BytesType, "k")
	hdr := func(h []byte) []byte { return field(nil, 4, protowire.BytesType, h) }
	tm := func(t []byte) []byte { return field(nil, 5, protowire.BytesType, t) }
	hkey := func(k string) []byte { return field(nil, 1, protowire.BytesType, k) }
	hval := field(nil, 2, protowire.BytesType, "hv")
	secs := func(s uint64) []byte { return field(nil, 1, protowire.VarintType, s) }
	nanos := func(n uint64) []byte { return field(nil, 2, protowire.VarintType, n) }
	many := &logv1.Record{Value: []byte("many"), Offset: 1}
	for i := range 300 {
		many.Headers = append(many.Headers, &logv1.Header{Key: fmt.Sprint("h", i), Value: bytes.Repeat([]byte{'x'}, i%5)})
	}
	keyed := make([]*logv1.Record, 5)
	for i := range keyed {
		keyed[i] = keyedRecord(uint64(1000 + i))
	}
	return []decodeCase{
		{"empty", nil, true},
		{"empty, not nil", []byte{}, true},
		{"keyed batch", batch(keyed...), true},
		{"plain records", batch(&logv1.Record{Value: []byte("a"), Offset: 1}, &logv1.Record{Value: []byte("b"), Offset: 2}), true},
		{"keyed and plain", batch(keyedRecord(1), &logv1.Record{Value: []byte("p"), Offset: 2}, keyedRecord(3), &logv1.Record{Offset: 4, Key: []byte("k")}), true},
		{"record of no fields", batch(&logv1.Record{}), true},
		{"records of no fields", records(nil, nil, nil), true},
		{"only record", marshal(&logv1.ConsumeStreamResponse{Record: keyedRecord(5)}), true},
		{"only an empty record", marshal(&logv1.ConsumeStreamResponse{Record: &logv1.Record{}}), true},
		{"record and records", marshal(&logv1.ConsumeStreamResponse{Record: keyedRecord(1), Records: []*logv1.Record{keyedRecord(2), {Value: []byte("x")}}}), true},
		{"record after records", append(records(value), field(nil, 1, protowire.BytesType, key)...), true},
		{"fields in any order", rec(tm(secs(3)), hdr(hkey("b")), key, hdr(hkey("a")), offset, value, hdr(nil)), true},
		{"empty value and key present", rec(field(nil, 1, protowire.BytesType, ""), field(nil, 3, protowire.BytesType, "")), true},
		{"zero offset present", rec(field(nil, 2, protowire.VarintType, uint64(0))), true},
		{"big offset", batch(&logv1.Record{Offset: 1<<63 + 5}, &logv1.Record{Offset: 1<<64 - 1}), true},
		{"offset in ten bytes, last 1", rec(field(nil, 2, protowire.VarintType, raw{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})), true},
		{"offset overflows ten bytes", rec(field(nil, 2, protowire.VarintType, raw{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02})), false},
		{"offset in eleven bytes", rec(field(nil, 2, protowire.VarintType, raw{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00})), false},
		{"offset not minimal", rec(field(nil, 2, protowire.VarintType, raw{0x85, 0x00})), false},
		{"length not minimal", []byte{0x12, 0x82, 0x00, 0x10, 0x01}, false},
		{"large value and key", batch(&logv1.Record{Value: bytes.Repeat([]byte{'v'}, 17000), Key: bytes.Repeat([]byte{'k'}, 300)}), true},
		{"time", batch(&logv1.Record{Time: ts(1_700_000_000, 123)}, &logv1.Record{Time: ts(0, 0)}), true},
		{"negative seconds", batch(&logv1.Record{Time: ts(-1, 0)}, &logv1.Record{Time: ts(-62135596800, 999_999_999)}, &logv1.Record{Time: ts(-1<<63, 1)}), true},
		{"seconds and nanos at zero present", rec(tm(append(secs(0), nanos(0)...))), true},
		{"nanos 999999999", rec(tm(nanos(999_999_999))), true},
		{"nanos 1e9", rec(tm(nanos(1_000_000_000))), false},
		{"nanos negative", batch(&logv1.Record{Time: ts(5, -1)}), false},
		{"nanos past int32", rec(tm(nanos(1 << 33))), false},
		{"nanos then seconds", rec(tm(append(nanos(1), secs(2)...))), false},
		{"seconds twice", rec(tm(append(secs(1), secs(2)...))), false},
		{"seconds not minimal", rec(tm(field(nil, 1, protowire.VarintType, raw{0x81, 0x80, 0x00}))), false},
		{"unknown field in time", rec(tm(append(secs(1), field(nil, 3, protowire.VarintType, uint64(1))...))), false},
		{"time as a varint", rec(field(nil, 5, protowire.VarintType, uint64(1))), false},
		{"header of no fields", rec(hdr(nil)), true},
		{"header with empty key and value present", rec(hdr(append(hkey(""), field(nil, 2, protowire.BytesType, "")...))), true},
		{"header key of UTF-8", rec(hdr(hkey("clé-日本"))), true},
		{"header value not UTF-8", rec(hdr(field(nil, 2, protowire.BytesType, []byte{0xff, 0xfe}))), true},
		{"header key not UTF-8", rec(hdr(hkey("\xc3"))), false},
		{"header value then key", rec(hdr(append(bytes.Clone(hval), hkey("k")...))), false},
		{"header key twice", rec(hdr(append(hkey("a"), hkey("b")...))), false},
		{"unknown field in a header", rec(hdr(append(hkey("a"), field(nil, 3, protowire.BytesType, "x")...))), false},
		{"many headers", batch(many, keyedRecord(2)), true},
		{"record twice", append(field(nil, 1, protowire.BytesType, value), field(nil, 1, protowire.BytesType, key)...), false},
		{"value twice", rec(value, field(nil, 1, protowire.BytesType, "w")), false},
		{"offset twice", rec(offset, offset), false},
		{"key twice", rec(key, key), false},
		{"time twice", rec(tm(secs(5)), tm(nanos(7))), false},
		{"unknown field in the response", append(records(value), field(nil, 3, protowire.VarintType, uint64(1))...), false},
		{"unknown field in a record", rec(value, field(nil, 6, protowire.BytesType, "x")), false},
		{"records as a varint", field(nil, 2, protowire.VarintType, uint64(1)), false},
		{"record as fixed32", field(nil, 1, protowire.Fixed32Type, raw{1, 2, 3, 4}), false},
		{"value as a varint", rec(field(nil, 1, protowire.VarintType, uint64(1))), false},
		{"offset as bytes", rec(field(nil, 2, protowire.BytesType, "x")), false},
		{"tag in two bytes", append([]byte{0x92, 0x00}, protowire.AppendBytes(nil, value)...), false},
		{"field 16, a two-byte tag", field(nil, 16, protowire.VarintType, uint64(1)), false},
		{"field zero", []byte{0x02, 0x00}, false},
		{"end group", []byte{0x14}, false},
		{"truncated", batch(keyedRecord(1))[:40], false},
		{"truncated in a varint", rec(field(nil, 2, protowire.VarintType, raw{0x80})), false},
		{"length past the end", []byte{0x12, 0x05, 0x0a, 0x00}, false},
		{"length past a record's end", rec([]byte{0x0a, 0x03, 'v'}), false},
	}
}

// checkResponse checks got, data's decoding, against protobuf-go's
// (want): equal, with headers and time where protobuf-go has them and
// every record its own message. slow is the codec's decoding, the slow
// path's: got's bytes fields are nil where its are. Decoded by the fast
// path, got's bytes and strings point into data, clipped.
func checkResponse(t *testing.T, fast bool, data []byte, got, want, slow *logv1.ConsumeStreamResponse) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %v, protobuf-go %v", got, want)
	}
	checkNils(t, "Decode", got, want)
	if (got.Record == nil) != (want.Record == nil) || (got.Records == nil) != (slow.Records == nil) {
		t.Fatalf("record %v, records %v; protobuf-go's record %v, the slow path's records %v", got.Record, got.Records, want.Record, slow.Records)
	}
	inData := func(what string, p unsafe.Pointer, n int) {
		if n == 0 || !fast {
			return
		}
		start, end := uintptr(unsafe.Pointer(unsafe.SliceData(data))), uintptr(p)+uintptr(n)
		if uintptr(p) < start || end > start+uintptr(len(data)) {
			t.Fatalf("%s does not point into the data", what)
		}
	}
	checkBytes := func(what string, b, slow []byte) {
		inData(what, unsafe.Pointer(unsafe.SliceData(b)), len(b))
		if fast && cap(b) != len(b) {
			t.Fatalf("%s not clipped: length %d, capacity %d", what, len(b), cap(b))
		}
		if (b == nil) != (slow == nil) {
			t.Fatalf("%s nil %v, the slow path's %v", what, b == nil, slow == nil)
		}
	}
	all := func(m *logv1.ConsumeStreamResponse) []*logv1.Record {
		if m.Record != nil {
			return append([]*logv1.Record{m.Record}, m.Records...)
		}
		return m.Records
	}
	gotAll, slowAll := all(got), all(slow)
	seen := map[any]bool{}
	for i, r := range gotAll {
		s := slowAll[i]
		checkBytes(fmt.Sprintf("record %d's value", i), r.Value, s.Value)
		checkBytes(fmt.Sprintf("record %d's key", i), r.Key, s.Key)
		if fast && cap(r.Headers) != len(r.Headers) {
			t.Fatalf("record %d's headers not clipped", i)
		}
		for j, h := range r.Headers {
			checkBytes(fmt.Sprintf("record %d header %d's value", i, j), h.Value, s.Headers[j].Value)
			inData(fmt.Sprintf("record %d header %d's key", i, j), unsafe.Pointer(unsafe.StringData(h.Key)), len(h.Key))
			if seen[h] {
				t.Fatalf("record %d header %d: shared", i, j)
			}
			seen[h] = true
		}
		if seen[r] || (r.Time != nil && seen[r.Time]) {
			t.Fatalf("record %d or its time shared", i)
		}
		seen[r], seen[r.Time] = true, true
	}
}

// protobufGo is data decoded by protobuf-go, and by the codec (the slow
// path) when protobuf-go accepts it.
func protobufGo(data []byte) (want, slow *logv1.ConsumeStreamResponse, err error) {
	want = &logv1.ConsumeStreamResponse{}
	if err = proto.Unmarshal(data, want); err != nil {
		return nil, nil, err
	}
	slow = &logv1.ConsumeStreamResponse{}
	if err := (protocodec.Codec{Alias: true}).Unmarshal(data, slow); err != nil {
		panic(fmt.Sprintf("the codec refuses what protobuf-go accepts: %v", err))
	}
	return want, slow, nil
}

// TestDecodeFast: Decode's fast path takes the plain encodings and leaves
// the rest to the slow path; either way Decode's result is protobuf-go's,
// accepted and refused alike.
func TestDecodeFast(t *testing.T) {
	for _, tc := range decodeCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			want, slow, wantErr := protobufGo(tc.data)
			var d protocodec.Decoder
			got, ok := d.DecodeFast(tc.data)
			if ok != tc.fast {
				t.Fatalf("fast path took it: %v, want %v", ok, tc.fast)
			}
			if ok {
				if wantErr != nil {
					t.Fatalf("fast path took what protobuf-go refuses: %v", wantErr)
				}
				checkResponse(t, true, tc.data, got, want, slow)
			}
			// A Decoder that decoded another response first.
			d.Decode(mustMarshal(t, &logv1.ConsumeStreamResponse{Record: keyedRecord(9), Records: []*logv1.Record{keyedRecord(1), keyedRecord(2)}}))
			got, err := d.Decode(tc.data)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("Decode: error %v, protobuf-go's %v", err, wantErr)
			}
			if err == nil {
				checkResponse(t, tc.fast, tc.data, got, want, slow)
			}
		})
	}
}

// TestDecodeReuse: one Decoder decodes A, B and A again, each time as
// protobuf-go does, whatever the previous response left in its memory; the
// second decode of a response allocates nothing, nor do any after.
func TestDecodeReuse(t *testing.T) {
	cases := decodeCases(t)
	byName := map[string][]byte{}
	for _, tc := range cases {
		byName[tc.name] = tc.data
	}
	for _, seq := range [][2]string{
		{"keyed batch", "plain records"},
		{"plain records", "keyed batch"},
		{"many headers", "record and records"},
		{"only record", "fields in any order"},
		{"time", "negative seconds"},
		{"keyed batch", "time twice"}, // B by the slow path
		{"time twice", "keyed and plain"},
		{"keyed batch", "truncated"},
	} {
		t.Run(seq[0]+", "+seq[1], func(t *testing.T) {
			var d protocodec.Decoder
			for _, name := range []string{seq[0], seq[1], seq[0]} {
				data := bytes.Clone(byName[name])
				want, slow, wantErr := protobufGo(data)
				got, err := d.Decode(data)
				if (err == nil) != (wantErr == nil) {
					t.Fatalf("%s: error %v, protobuf-go's %v", name, err, wantErr)
				}
				if err == nil {
					checkResponse(t, fastPath(data), data, got, want, slow)
				}
			}
		})
	}

	// The second decode of a response, as each shape comes first.
	for _, tc := range cases {
		if !tc.fast {
			continue
		}
		var d protocodec.Decoder
		if _, err := d.Decode(tc.data); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := mallocs(func() { d.Decode(tc.data) }); n != 0 {
			t.Errorf("%s: the second decode took %d allocations", tc.name, n)
		}
	}

	// A response of 1000 keyed records.
	resp := &logv1.ConsumeStreamResponse{}
	for i := range 1000 {
		resp.Records = append(resp.Records, keyedRecord(uint64(i)))
	}
	data := mustMarshal(t, resp)
	var d protocodec.Decoder
	if n := mallocs(func() { d.Decode(data) }); n > 15 {
		t.Errorf("the first decode of 1000 keyed records took %d allocations, want at most 15", n)
	}
	if n := mallocs(func() { d.Decode(data) }); n != 0 {
		t.Errorf("the second decode of 1000 keyed records took %d allocations", n)
	}

	// Responses alternating, each decoded once before.
	a, b := byName["keyed batch"], byName["record and records"]
	if allocs := testing.AllocsPerRun(20, func() {
		d.Decode(a)
		d.Decode(b)
	}); allocs != 0 {
		t.Errorf("decoding two responses in turn took %v allocations", allocs)
	}
}

// fastPath reports whether Decode's fast path takes data.
func fastPath(data []byte) bool {
	_, ok := new(protocodec.Decoder).DecodeFast(data)
	return ok
}

// mallocs is how many allocations f makes, run once.
func mallocs(f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// FuzzDecode: whatever Decode's fast path takes, protobuf-go accepts,
// with an equal message; and Decode, fast or slow, after another
// response or none, accepts what protobuf-go accepts, with its message.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases(f) {
		f.Add(tc.data)
	}
	seed := &logv1.ConsumeStreamResponse{Record: keyedRecord(9), Records: []*logv1.Record{keyedRecord(1), {Value: []byte("v")}, keyedRecord(3)}}
	seedBytes := mustMarshal(f, seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		want, slow, wantErr := protobufGo(data)
		var d protocodec.Decoder
		got, fast := d.DecodeFast(data)
		if fast {
			if wantErr != nil {
				t.Fatalf("fast path took %x, which protobuf-go refuses: %v", data, wantErr)
			}
			checkResponse(t, true, data, got, want, slow)
		}
		for i, in := range [][]byte{data, seedBytes, data, seedBytes} {
			in = bytes.Clone(in)
			got, err := d.Decode(in)
			switch {
			case i%2 == 1 && (err != nil || !proto.Equal(got, seed)):
				t.Fatalf("the seed after %x: %v, %v", data, got, err)
			case i%2 == 0 && (err == nil) != (wantErr == nil):
				t.Fatalf("Decode: error %v, protobuf-go's %v", err, wantErr)
			case i%2 == 0 && err == nil:
				checkResponse(t, fast, in, got, want, slow)
			}
		}
	})
}
