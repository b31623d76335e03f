package logstore

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the frame decoder: it never
// panics, never reads past its input, and whatever it accepts re-encodes to
// exactly the same bytes (so it cannot accept a record that was not written).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendFrame(nil, 7, 123, &Record{Value: []byte("hello")}), uint64(7), 1024)
	f.Add(appendFrame(nil, 0, 0, &Record{}), uint64(0), 0)
	f.Add(appendFrame(nil, 1<<40, -5, &Record{Value: bytes.Repeat([]byte{0xab}, 100)}), uint64(1<<40), 100)
	f.Add(appendFrame(nil, 9, 77, &Record{Key: []byte("k"), Value: []byte("v")}), uint64(9), 1024)
	f.Add(appendFrame(nil, 9, 77, &Record{Headers: []Header{{"a", nil}, {"a", []byte("2")}}, Value: []byte("v")}), uint64(9), 1024)
	f.Add(make([]byte, 64), uint64(0), 1024)
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint64(0), 1<<30)
	f.Fuzz(func(t *testing.T, b []byte, want uint64, maxValue int) {
		if maxValue < 0 {
			maxValue = -maxValue
		}
		maxValue %= 1 << 20
		h, payload, err := decodeFrame(b, want, maxValue)
		if err != nil {
			return
		}
		if h.offset != want || h.valueLen != len(payload) || h.valueLen > maxValue {
			t.Fatalf("accepted header %+v for offset %d, limit %d", h, want, maxValue)
		}
		var rec Record
		if decodeRecord(h, payload, &rec, new([]Header)) != nil {
			return
		}
		again := appendFrame(nil, h.offset, h.unixNano, &rec)
		if int64(len(again)) != h.size() || !bytes.Equal(again[:frameHeaderSize+len(payload)], b[:frameHeaderSize+len(payload)]) {
			t.Fatalf("accepted frame does not re-encode to its bytes")
		}
	})
}

func FuzzFileHeader(f *testing.F) {
	f.Add(fileHeader(storeMagic, 5), uint64(5))
	f.Add(make([]byte, 32), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, base uint64) {
		if checkFileHeader(b, storeMagic, base) == nil && !bytes.Equal(b[:24], fileHeader(storeMagic, base)[:24]) {
			t.Fatalf("accepted header %x for base %d", b[:32], base)
		}
	})
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset uint64
		rec    Record
	}{
		{"empty", 0, Record{}},
		{"aligned", 3, Record{Value: make([]byte, 4)}},
		{"unaligned", 1 << 50, Record{Value: []byte("abc")}},
		{"key", 5, Record{Key: []byte("user-1"), Value: []byte("abc")}},
		{"headers kept in order with repeats", 6, Record{
			Headers: []Header{{"b", []byte("1")}, {"a", nil}, {"b", []byte("2")}}, Value: []byte("xyz")}},
		{"key, headers, empty value", 7, Record{Key: []byte{0}, Headers: []Header{{"ü", []byte{0xff}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendFrame([]byte("prefix"), tc.offset, 99, &tc.rec)[6:]
			if len(b)%frameAlign != 0 || int64(len(b)) != frameSize(payloadSize(&tc.rec)) {
				t.Fatalf("frame length %d", len(b))
			}
			h, payload, err := decodeFrame(b, tc.offset, 1<<20)
			if err != nil || h.unixNano != 99 {
				t.Fatalf("decode = %+v %v", h, err)
			}
			var got Record
			if err := decodeRecord(h, payload, &got, new([]Header)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Key, tc.rec.Key) || !bytes.Equal(got.Value, tc.rec.Value) || !sameHeaders(got.Headers, tc.rec.Headers) {
				t.Fatalf("decoded %+v, want %+v", got, tc.rec)
			}
			value := payload // the bytes the limit and the flips below cover
			if _, _, err := decodeFrame(b, tc.offset+1, 1<<20); err == nil {
				t.Fatal("frame accepted at the wrong offset")
			}
			if _, _, err := decodeFrame(b, tc.offset, len(value)-1); err == nil && len(value) > 0 {
				t.Fatal("frame accepted over the length limit")
			}
			for i := range b[:frameHeaderSize+len(value)] {
				c := bytes.Clone(b)
				c[i] ^= 0x10
				if _, _, err := decodeFrame(c, tc.offset, 1<<20); err == nil {
					t.Fatalf("flipped byte %d accepted", i)
				}
			}
		})
	}
}

func sameHeaders(a, b []Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
