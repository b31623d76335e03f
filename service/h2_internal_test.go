package service

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/net/http2"
)

// frames writes a client preface and then the frames write adds.
func frames(t *testing.T, write func(fr *http2.Framer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	fr.AllowIllegalWrites = true // empty CONTINUATION frames
	if err := write(fr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func continuations(n int, payload []byte) func(fr *http2.Framer) error {
	return func(fr *http2.Framer) error {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}}); err != nil {
			return err
		}
		for range n {
			if err := fr.WriteContinuation(1, false, payload); err != nil {
				return err
			}
		}
		return nil
	}
}

// The guard follows frame boundaries however the reads split the bytes.
func TestFrameGuardScan(t *testing.T) {
	big := bytes.Repeat([]byte{0}, 20000)
	tests := []struct {
		name   string
		stream []byte
		cut    bool
	}{
		{"data and settings", frames(t, func(fr *http2.Framer) error {
			if err := fr.WriteSettings(); err != nil {
				return err
			}
			// Payload bytes that look like CONTINUATION headers are skipped.
			fake := bytes.Repeat([]byte{0, 0, 0, 0x9, 0, 0, 0, 0, 1}, 500)
			return fr.WriteData(1, false, fake)
		}), false},
		{"continuations at the cap", frames(t, continuations(maxContinuationFrames, nil)), false},
		{"empty continuations past the cap", frames(t, continuations(maxContinuationFrames+1, nil)), true},
		{"full continuations past the cap", frames(t, continuations(maxContinuationFrames+1, big[:16384])), true},
		{"the count restarts with each header block", frames(t, func(fr *http2.Framer) error {
			for range 3 {
				if err := continuations(maxContinuationFrames-1, nil)(fr); err != nil {
					return err
				}
				if err := fr.WriteContinuation(1, true, nil); err != nil {
					return err
				}
			}
			return nil
		}), false}, // 128 CONTINUATION frames a block, three blocks
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 5, 9, 4096, len(tt.stream)} {
			g := &frameGuard{skip: len(http2.ClientPreface)}
			var err error
			for b := tt.stream; len(b) > 0 && err == nil; {
				k := min(chunk, len(b))
				err = g.scan(b[:k])
				b = b[k:]
			}
			if cut := errors.Is(err, errContinuationFlood); cut != tt.cut || err != nil && !cut {
				t.Errorf("%s, reads of %d: err %v, want cut %v", tt.name, chunk, err, tt.cut)
			}
		}
	}
}
