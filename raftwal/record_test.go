package raftwal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"
)

// encodeEntry encodes one entry's record into a buffer of its own.
func encodeEntry(k key, index uint64, value []byte) []byte {
	return appendRecord(nil, kindEntry, k, index, value)
}

// recordSeeds are valid records of every kind, for the fuzzer and the
// round-trip test.
func recordSeeds() [][]byte {
	k := key{name: "groups/7", inc: 0x0123456789abcdef}
	return [][]byte{
		encodeEntry(k, 1, []byte("a")),
		encodeEntry(k, 1<<40, bytes.Repeat([]byte{0xff}, 300)),
		encodeEntry(key{}, 0, nil),
		encodeEntry(k, ^uint64(0)-1, []byte("last index")),
		encodeControl(kindTruncateFrom, k, 5),
		encodeControl(kindTruncateBefore, k, 1<<63),
		encodeControl(kindReset, key{name: "x"}, 0),
	}
}

// TestDecodeRoundTrip: every record decodes to what was encoded.
func TestDecodeRoundTrip(t *testing.T) {
	k := key{name: "g", inc: 42}
	for _, tc := range []struct {
		name string
		b    []byte
		want record
	}{
		{"entry", encodeEntry(k, 9, []byte("x")), record{kind: kindEntry, key: k, index: 9, value: []byte("x")}},
		{"empty entry", encodeEntry(k, 9, nil), record{kind: kindEntry, key: k, index: 9, value: []byte{}}},
		{"truncateFrom", encodeControl(kindTruncateFrom, k, 3), record{kind: kindTruncateFrom, key: k, index: 3}},
		{"truncateBefore", encodeControl(kindTruncateBefore, k, 4), record{kind: kindTruncateBefore, key: k, index: 4}},
		{"reset", encodeControl(kindReset, k, 5), record{kind: kindReset, key: k, index: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := decode(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRecord(rec, tc.want) {
				t.Fatalf("decode = %+v; want %+v", rec, tc.want)
			}
		})
	}
}

// TestDecodeErrors: damaged records are errors wrapping ErrCorrupt.
func TestDecodeErrors(t *testing.T) {
	k := key{name: "g", inc: 42}
	entry := encodeEntry(k, 9, []byte("xyz"))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown kind", append([]byte{9}, entry[1:]...)},
		{"kind 0", append([]byte{0}, entry[1:]...)},
		{"cut in the name", entry[:4]},
		{"cut in the index", encodeControl(kindReset, k, 1<<40)[:1+1+1+8+2]},
		{"control with trailing byte", append(encodeControl(kindReset, k, 1), 0)},
		{"name too long", encodeControl(kindReset, key{name: string(make([]byte, maxNameBytes+1))}, 1)},
		{"entry past the last index", encodeEntry(k, ^uint64(0), nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rec, err := decode(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode = %+v, %v; want an error wrapping ErrCorrupt", rec, err)
			}
		})
	}
}

// TestDecodeNonMinimalVarint documents why FuzzDecode compares decoded
// fields rather than bytes: decode accepts a varint written in more bytes
// than needed (binary.Uvarint does), so the encoding is not canonical.
func TestDecodeNonMinimalVarint(t *testing.T) {
	b := []byte{kindReset + headerChecked, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0x00} // index 1 in two bytes
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	rec, err := decode(b)
	if err != nil || rec.index != 1 {
		t.Fatalf("decode of a two-byte varint 1 = %+v, %v", rec, err)
	}
}

// TestDecodeHeaderChecksum: records carry a checksum of their header, and
// records of the format before it (WALs written by session 11's build)
// still decode, reported as unchecked; a damaged header is refused
// whether decodeHead has the whole record or its head only.
func TestDecodeHeaderChecksum(t *testing.T) {
	k := key{name: "topics/t/3", inc: 42}
	entry := encodeEntry(k, 7, make([]byte, 100))
	rec, checked, err := decodeHead(entry[:len(entry)-90], len(entry))
	if err != nil || !checked || rec.key != k || rec.index != 7 || rec.kind != kindEntry {
		t.Fatalf("decodeHead of an entry's head = %+v, checked %v, %v", rec, checked, err)
	}
	old := func(kind byte, index uint64, value []byte) []byte {
		b := []byte{kind}
		b = binary.AppendUvarint(b, uint64(len(k.name)))
		b = append(b, k.name...)
		b = binary.LittleEndian.AppendUint64(b, k.inc)
		b = binary.AppendUvarint(b, index)
		return append(b, value...)
	}
	for _, kind := range []byte{kindEntry, kindTruncateFrom, kindTruncateBefore, kindReset} {
		var v []byte
		if kind == kindEntry {
			v = []byte("entry")
		}
		b := old(kind, 9, v)
		rec, checked, err := decodeHead(b, len(b))
		if err != nil || checked || rec.kind != kind || rec.key != k || rec.index != 9 || string(rec.value) != string(v) {
			t.Fatalf("earlier format, kind %d: %+v, checked %v, %v", kind, rec, checked, err)
		}
	}
	// Every header byte but the kind: a kind turned into one of the earlier
	// format decodes unchecked, and replay then reads the frame whole.
	for i := 1; i < len(entry)-100; i++ {
		b := bytes.Clone(entry)
		b[i] ^= 0x04
		if rec, _, err := decodeHead(b[:len(b)-90], len(b)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("header byte %d flipped: decodeHead = %+v, %v; want ErrCorrupt", i, rec, err)
		}
	}
	control := encodeControl(kindTruncateFrom, k, 3)
	if _, _, err := decodeHead(control[:len(control)-1], len(control)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a control record's head alone: %v, want ErrCorrupt", err)
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
		rec, checked, err := decodeHead(b, len(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(b, input) {
			t.Fatal("decode changed its input")
		}
		if (rec.kind == kindEntry) != (rec.value != nil) {
			t.Fatalf("record of kind %d with value %x", rec.kind, rec.value)
		}
		// A record of the earlier format (no header CRC) encodes again 4
		// bytes longer.
		n := len(b)
		if !checked {
			n += 4
		}
		again := appendRecord(nil, rec.kind, rec.key, rec.index, rec.value)
		if len(again) > n || (len(again) == n && checked && !bytes.Equal(again, b)) {
			t.Fatalf("record %x encodes again as %x", b, again)
		}
		// Its head alone, as replay reads it, says the same or is refused.
		for _, k := range []int{len(b) / 2, len(b) - 1} {
			if k < 0 {
				continue
			}
			head, hchecked, err := decodeHead(b[:k], len(b))
			if err == nil && (head.kind != rec.kind || head.key != rec.key || head.index != rec.index || hchecked != checked || head.kind != kindEntry) {
				t.Fatalf("head of %d bytes decodes to %+v (checked %v); the record to %+v (%v)", k, head, hchecked, rec, checked)
			}
		}
		back, err := decode(again)
		if err != nil || !sameRecord(back, rec) {
			t.Fatalf("the record encoded again decodes to %+v, %v; want %+v", back, err, rec)
		}
	})
}

// sameRecord compares records, a nil value unequal to an empty one.
func sameRecord(a, b record) bool {
	return a.kind == b.kind && a.key == b.key && a.index == b.index &&
		bytes.Equal(a.value, b.value) && (a.value == nil) == (b.value == nil)
}
