package logstore

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the frame decoder: it never
// panics, never reads past its input, and whatever it accepts re-encodes to
// exactly the same bytes (so it cannot accept a record that was not written).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendFrame(nil, 7, 123, []byte("hello")), uint64(7), 1024)
	f.Add(appendFrame(nil, 0, 0, nil), uint64(0), 0)
	f.Add(appendFrame(nil, 1<<40, -5, bytes.Repeat([]byte{0xab}, 100)), uint64(1<<40), 100)
	f.Add(make([]byte, 64), uint64(0), 1024)
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint64(0), 1<<30)
	f.Fuzz(func(t *testing.T, b []byte, want uint64, maxValue int) {
		if maxValue < 0 {
			maxValue = -maxValue
		}
		maxValue %= 1 << 20
		h, value, err := decodeFrame(b, want, maxValue)
		if err != nil {
			return
		}
		if h.offset != want || h.valueLen != len(value) || h.valueLen > maxValue {
			t.Fatalf("accepted header %+v for offset %d, limit %d", h, want, maxValue)
		}
		again := appendFrame(nil, h.offset, h.unixNano, value)
		if int64(len(again)) != h.size() || !bytes.Equal(again[:frameHeaderSize+len(value)], b[:frameHeaderSize+len(value)]) {
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
		value  []byte
	}{
		{"empty", 0, nil},
		{"aligned", 3, make([]byte, 4)},
		{"unaligned", 1 << 50, []byte("abc")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendFrame([]byte("prefix"), tc.offset, 99, tc.value)[6:]
			if len(b)%frameAlign != 0 || int64(len(b)) != frameSize(len(tc.value)) {
				t.Fatalf("frame length %d", len(b))
			}
			h, v, err := decodeFrame(b, tc.offset, 1<<20)
			if err != nil || !bytes.Equal(v, tc.value) || h.unixNano != 99 {
				t.Fatalf("decode = %+v %q %v", h, v, err)
			}
			if _, _, err := decodeFrame(b, tc.offset+1, 1<<20); err == nil {
				t.Fatal("frame accepted at the wrong offset")
			}
			if _, _, err := decodeFrame(b, tc.offset, len(tc.value)-1); err == nil && len(tc.value) > 0 {
				t.Fatal("frame accepted over the length limit")
			}
			for i := range b[:frameHeaderSize+len(tc.value)] {
				c := bytes.Clone(b)
				c[i] ^= 0x10
				if _, _, err := decodeFrame(c, tc.offset, 1<<20); err == nil {
					t.Fatalf("flipped byte %d accepted", i)
				}
			}
		})
	}
}
