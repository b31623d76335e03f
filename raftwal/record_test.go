package raftwal

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// recordSeeds are valid records of every kind, for the fuzzer and the
// round-trip test.
func recordSeeds() [][]byte {
	k := key{name: "groups/7", inc: 0x0123456789abcdef}
	return [][]byte{
		encodeEntries(k, 1, [][]byte{[]byte("a")}),
		encodeEntries(k, 1<<40, [][]byte{nil, []byte("two"), bytes.Repeat([]byte{0xff}, 300)}),
		encodeEntries(key{}, 0, [][]byte{{}}),
		encodeEntries(k, ^uint64(0)-1, [][]byte{[]byte("last index")}),
		encodeEntries(k, ^uint64(0), [][]byte{[]byte("past the last index")}),
		encodeControl(kindTruncateFrom, k, 5),
		encodeControl(kindTruncateBefore, k, 1<<63),
		encodeControl(kindReset, key{name: "x"}, 0),
	}
}

// TestDecodeRoundTrip: every record decodes to what was encoded.
func TestDecodeRoundTrip(t *testing.T) {
	k := key{name: "g", inc: 42}
	for _, tc := range []struct {
		name   string
		b      []byte
		want   record
		values int
	}{
		{"entries", encodeEntries(k, 9, [][]byte{[]byte("x"), nil}), record{kind: kindEntries, key: k, index: 9, values: [][]byte{[]byte("x"), {}}}, 2},
		{"truncateFrom", encodeControl(kindTruncateFrom, k, 3), record{kind: kindTruncateFrom, key: k, index: 3}, 0},
		{"truncateBefore", encodeControl(kindTruncateBefore, k, 4), record{kind: kindTruncateBefore, key: k, index: 4}, 0},
		{"reset", encodeControl(kindReset, k, 5), record{kind: kindReset, key: k, index: 5}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, count, err := decode(tc.b, true)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRecord(rec, tc.want) || count != uint64(tc.values) {
				t.Fatalf("decode = %+v, count %d; want %+v, count %d", rec, count, tc.want, tc.values)
			}
		})
	}
}

// TestDecodeErrors: damaged records are errors wrapping ErrCorrupt.
func TestDecodeErrors(t *testing.T) {
	k := key{name: "g", inc: 42}
	entries := encodeEntries(k, 9, [][]byte{[]byte("xyz")})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown kind", append([]byte{9}, entries[1:]...)},
		{"kind 0", append([]byte{0}, entries[1:]...)},
		{"truncated", entries[:len(entries)-1]},
		{"trailing byte", append(slices.Clone(entries), 0)},
		{"control with trailing byte", append(encodeControl(kindReset, k, 1), 0)},
		{"no values", encodeEntries(k, 9, nil)},
		{"name too long", encodeControl(kindReset, key{name: string(make([]byte, maxNameBytes+1))}, 1)},
		{"index overflows", encodeEntries(k, ^uint64(0), [][]byte{nil, nil})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rec, _, err := decode(tc.b, true); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode = %+v, %v; want an error wrapping ErrCorrupt", rec, err)
			}
		})
	}
}

// TestDecodeNonMinimalVarint documents why FuzzDecode compares decoded
// fields rather than bytes: decode accepts a varint written in more bytes
// than needed (binary.Uvarint does), so the encoding is not canonical.
func TestDecodeNonMinimalVarint(t *testing.T) {
	b := encodeControl(kindReset, key{name: "g"}, 1) // index 1 is the last byte
	b = append(b[:len(b)-1], 0x81, 0x00)
	rec, _, err := decode(b, true)
	if err != nil || rec.index != 1 {
		t.Fatalf("decode of a two-byte varint 1 = %+v, %v", rec, err)
	}
}

// FuzzDecode: decode never panics; what it accepts encodes back to a
// record that decodes to the same fields, no longer than the input and
// the same bytes when as long (the encoder writes minimal varints).
func FuzzDecode(f *testing.F) {
	for _, b := range recordSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		input := slices.Clone(b)
		rec, count, err := decode(b, true)
		counted, count2, err2 := decode(b, false)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("decode with values: %v; without: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(b, input) {
			t.Fatal("decode changed its input")
		}
		if count != count2 || counted.values != nil || !sameRecord(counted, record{kind: rec.kind, key: rec.key, index: rec.index}) {
			t.Fatalf("decode without values = %+v, count %d; with values %+v, count %d", counted, count2, rec, count)
		}
		var again []byte
		if rec.kind == kindEntries {
			if count != uint64(len(rec.values)) || count == 0 {
				t.Fatalf("count %d for %d values", count, len(rec.values))
			}
			for _, v := range rec.values {
				if cap(v) != len(v) {
					t.Fatalf("a value has room past its end (cap %d, len %d): appending to it would overwrite the record", cap(v), len(v))
				}
			}
			again = encodeEntries(rec.key, rec.index, rec.values)
		} else {
			if count != 0 || rec.values != nil {
				t.Fatalf("%d values in a control record of kind %d", count, rec.kind)
			}
			again = encodeControl(rec.kind, rec.key, rec.index)
		}
		if len(again) > len(b) || (len(again) == len(b) && !bytes.Equal(again, b)) {
			t.Fatalf("record %x encodes again as %x", b, again)
		}
		back, _, err := decode(again, true)
		if err != nil || !sameRecord(back, rec) {
			t.Fatalf("the record encoded again decodes to %+v, %v; want %+v", back, err, rec)
		}
	})
}

// sameRecord compares records, a nil value equal to an empty one.
func sameRecord(a, b record) bool {
	return a.kind == b.kind && a.key == b.key && a.index == b.index &&
		slices.EqualFunc(a.values, b.values, bytes.Equal) && (a.values == nil) == (b.values == nil)
}
