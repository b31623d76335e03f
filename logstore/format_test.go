package logstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the version 1 frame decoder:
// it never panics, never reads past its input, and whatever it accepts
// re-encodes to exactly the same bytes (so it cannot accept a record that
// was not written).
func FuzzDecodeRecord(f *testing.F) { fuzzDecode(f, layoutV1) }

// FuzzDecodeRecordV2 is FuzzDecodeRecord for the version 2 frame.
func FuzzDecodeRecordV2(f *testing.F) { fuzzDecode(f, layoutV2) }

func fuzzDecode(f *testing.F, fl *layout) {
	f.Add(fl.appendFrame(nil, 7, 123, &Record{Value: []byte("hello")}), uint64(7), 1024)
	f.Add(fl.appendFrame(nil, 0, 0, &Record{}), uint64(0), 0)
	f.Add(fl.appendFrame(nil, 1<<40, -5, &Record{Value: bytes.Repeat([]byte{0xab}, 100)}), uint64(1<<40), 100)
	f.Add(fl.appendFrame(nil, 9, 77, &Record{Key: []byte("k"), Value: []byte("v")}), uint64(9), 1024)
	f.Add(fl.appendFrame(nil, 9, 77, &Record{Headers: []Header{{"a", nil}, {"a", []byte("2")}}, Value: []byte("v")}), uint64(9), 1024)
	f.Add(make([]byte, 64), uint64(0), 1024)
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint64(0), 1<<30)
	f.Add([]byte{0xfd, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint64(0), 1<<30)
	f.Fuzz(func(t *testing.T, b []byte, want uint64, maxValue int) {
		if maxValue < 0 {
			maxValue = -maxValue
		}
		maxValue %= 1 << 20
		h, payload, err := fl.decodeFrame(b, want, maxValue)
		if err != nil {
			return
		}
		if h.offset != want || h.valueLen != len(payload) || h.valueLen > maxValue || h.size() > int64(len(b)) {
			t.Fatalf("accepted header %+v for offset %d, limit %d", h, want, maxValue)
		}
		var rec Record
		if decodeRecord(h, payload, &rec, new([]Header), 1) != nil {
			return
		}
		hs := fl.headerSize
		again := fl.appendFrame(nil, h.offset, h.unixNano, &rec)
		if int64(len(again)) != h.size() || !bytes.Equal(again[:hs+len(payload)], b[:hs+len(payload)]) {
			t.Fatalf("accepted frame does not re-encode to its bytes")
		}
	})
}

func FuzzFileHeader(f *testing.F) {
	f.Add(fileHeader(storeMagic, 5, 1), uint64(5))
	f.Add(fileHeader(storeMagic, 5, 2), uint64(5))
	f.Add(fileHeader(storeMagic, 5, 3), uint64(5))
	f.Add(make([]byte, 32), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, base uint64) {
		fl, err := checkFileHeader(b, storeMagic, base)
		if err == nil && !bytes.Equal(b[:24], fileHeader(storeMagic, base, fl.version)[:24]) {
			t.Fatalf("accepted header %x for base %d", b[:32], base)
		}
	})
}

func TestFileHeaderVersions(t *testing.T) {
	for v, want := range map[uint16]*layout{1: layoutV1, 2: layoutV2, 0: nil, 3: nil} {
		fl, err := checkFileHeader(fileHeader(indexMagic, 9, v), indexMagic, 9)
		if fl != want || (err == nil) != (want != nil) {
			t.Errorf("version %d: layout %v, err %v", v, fl, err)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, fl := range []*layout{layoutV1, layoutV2} {
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
			t.Run(fmt.Sprintf("v%d/%s", fl.version, tc.name), func(t *testing.T) {
				b := fl.appendFrame([]byte("prefix"), tc.offset, 99, &tc.rec)[6:]
				if int64(len(b))%fl.align != 0 || int64(len(b)) != fl.frameSize(payloadSize(&tc.rec)) {
					t.Fatalf("frame length %d", len(b))
				}
				if fl.startsFrame(storeMagic[0]) || !fl.startsFrame(b[0]) {
					t.Fatalf("first byte %#x: the snapshot stream could not tell frames from headers", b[0])
				}
				h, payload, err := fl.decodeFrame(b, tc.offset, 1<<20)
				if err != nil || h.unixNano != 99 || h.offset != tc.offset {
					t.Fatalf("decode = %+v %v", h, err)
				}
				var got Record
				if err := decodeRecord(h, payload, &got, new([]Header), 1); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Key, tc.rec.Key) || !bytes.Equal(got.Value, tc.rec.Value) || !sameHeaders(got.Headers, tc.rec.Headers) {
					t.Fatalf("decoded %+v, want %+v", got, tc.rec)
				}
				value := payload // the bytes the limit and the flips below cover
				for _, other := range []uint64{tc.offset + 1, tc.offset - 1, tc.offset + 1<<32} {
					if _, _, err := fl.decodeFrame(b, other, 1<<20); err == nil && (fl.version == 1 || other != tc.offset+1<<32) {
						t.Fatalf("frame of %d accepted at offset %d", tc.offset, other)
					}
				}
				if _, _, err := fl.decodeFrame(b, tc.offset, len(value)-1); err == nil && len(value) > 0 {
					t.Fatal("frame accepted over the length limit")
				}
				for i := range b[:fl.headerSize+len(value)] {
					c := bytes.Clone(b)
					c[i] ^= 0x10
					if _, _, err := fl.decodeFrame(c, tc.offset, 1<<20); err == nil {
						t.Fatalf("flipped byte %d accepted", i)
					}
				}
			})
		}
	}
}

// TestFrameV2Layout pins the version 2 frame byte by byte (doc.go).
func TestFrameV2Layout(t *testing.T) {
	b := layoutV2.appendFrame(nil, 1<<32+5, 0x0102030405060708, &Record{Key: []byte("k"), Value: []byte("value")})
	// payload: uvarint 1, "k", uvarint 0, "value" = 8 bytes; frame 20+8 = 28.
	want := []byte{8<<2 | 2, 0, 0, 0, 5, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1}
	if len(b) != 28 || !bytes.Equal(b[:16], want) {
		t.Fatalf("frame %x, want %x... of 28 bytes", b, want)
	}
	crc := crc32.Update(crc32.Checksum(b[:16], castagnoli), castagnoli, b[20:28])
	if got := binary.LittleEndian.Uint32(b[16:20]); got != crc {
		t.Fatalf("crc %08x, want %08x", got, crc)
	}
	if layoutV2.frameSize(100) != 120 || layoutV1.frameSize(100) != 128 {
		t.Fatalf("100-byte frames: v1 %d, v2 %d", layoutV1.frameSize(100), layoutV2.frameSize(100))
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

func TestVisiblePacking(t *testing.T) {
	var s segment
	for _, c := range []struct {
		count uint64
		end   int64
	}{{0, 32}, {1<<28 - 1, maxSegmentBytes + 1<<30 + 28}, {12345, 1<<32 + 7}} {
		s.setVisible(c.count, c.end)
		if count, end := s.visible(); count != c.count || end != c.end {
			t.Errorf("setVisible(%d, %d) reads back %d, %d", c.count, c.end, count, end)
		}
	}
}
