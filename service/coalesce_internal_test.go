package service

import (
	"encoding/binary"
	"testing"
)

// frame builds an HTTP/2 frame header and an empty payload of n bytes.
func frame(typ, flags byte, n int) []byte {
	f := make([]byte, 9+n)
	binary.BigEndian.PutUint32(f[0:4], uint32(n)<<8)
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:9], 1)
	return f
}

func TestCoalescerHoldsOnlyHeadersWithoutEndStream(t *testing.T) {
	const (
		data         = 0x0
		endStream    = 0x1
		endHeaders   = 0x4
		frameSetting = 0x4
	)
	cat := func(fs ...[]byte) []byte {
		var b []byte
		for _, f := range fs {
			b = append(b, f...)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		writes [][]byte // the last one decides
		hold   bool
	}{
		{"response headers", [][]byte{frame(frameHeaders, endHeaders, 20)}, true},
		{"trailers (END_STREAM)", [][]byte{frame(frameHeaders, endHeaders|endStream, 20)}, false},
		{"headers continued", [][]byte{frame(frameHeaders, 0, 20)}, false},
		{"data", [][]byte{frame(data, 0, 100)}, false},
		{"data then headers", [][]byte{cat(frame(data, 0, 100), frame(frameHeaders, endHeaders, 20))}, true},
		{"headers then data", [][]byte{cat(frame(frameHeaders, endHeaders, 20), frame(data, endStream, 100))}, false},
		{"settings", [][]byte{frame(frameSetting, 0, 6)}, false},
		{"headers split across writes", func() [][]byte {
			f := cat(frame(data, 0, 10), frame(frameHeaders, endHeaders, 20))
			return [][]byte{f[:15], f[15:25], f[25:]}
		}(), true},
		{"payload still to come", func() [][]byte {
			f := frame(frameHeaders, endHeaders, 20)
			return [][]byte{f[:20]}
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &coalescer{}
			var got bool
			for _, w := range tc.writes {
				got = c.endsWithHeaders(w)
			}
			if got != tc.hold {
				t.Errorf("hold = %v, want %v", got, tc.hold)
			}
		})
	}
}
