package cluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/proglog/proglog/raftmux"
)

// FuzzReadPreamble: the decoder accepts only what appendPreamble writes for
// a valid name, reads not a byte past it (raft reads what follows), and
// reads back every valid name it is given.
func FuzzReadPreamble(f *testing.F) {
	f.Add(appendPreamble(nil, "orders.0"))
	f.Add(appendPreamble(nil, strings.Repeat("a", maxGroupName)))
	f.Add(append(appendPreamble(nil, "x"), 0, 1, 2))
	f.Add([]byte{preambleMagic, 'P', 'L', 'G', 0})
	f.Add([]byte{preambleMagic, 'P', 'L', 'G', maxGroupName + 1})
	f.Add([]byte{preambleMagic, 'P', 'L', 'G', 3, 'a', '/', 'b'})
	f.Add([]byte{preambleMagic, 'P', 'L', 'X', 1, 'a'})
	f.Add([]byte{0, 0x85})
	f.Add(appendMuxPreamble(nil, raftmux.KindRPC))
	f.Add(appendMuxPreamble(nil, raftmux.KindSnapshot))
	f.Add([]byte{preambleMagic, 'P', 'L', 'M', 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		name, kind, err := readPreamble(r)
		if err == nil && kind != 0 {
			if read, want := b[:len(b)-r.Len()], appendMuxPreamble(nil, kind); !bytes.Equal(read, want) {
				t.Fatalf("read % x for mux kind %d, which is written % x", read, kind, want)
			}
		} else if err == nil {
			if verr := validGroupName(name); verr != nil {
				t.Fatalf("decoded an invalid name: %v", verr)
			}
			if read, want := b[:len(b)-r.Len()], appendPreamble(nil, name); !bytes.Equal(read, want) {
				t.Fatalf("read % x for %q, which is written % x", read, name, want)
			}
		}
		if validGroupName(string(b)) == nil {
			got, kind, err := readPreamble(bytes.NewReader(appendPreamble(nil, string(b))))
			if err != nil || got != string(b) || kind != 0 {
				t.Fatalf("round trip of %q: %q, %v", b, got, err)
			}
		}
	})
}
