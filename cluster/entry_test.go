package cluster

import (
	"bytes"
	"slices"
	"testing"
)

func TestBatchEncoding(t *testing.T) {
	tests := [][][]byte{
		{{}},
		{[]byte("a")},
		{[]byte("one"), {}, bytes.Repeat([]byte{0xff}, 300)},
	}
	for _, values := range tests {
		got, err := decodeBatch(encodeBatch(values))
		if err != nil || !slices.EqualFunc(got, values, bytes.Equal) {
			t.Fatalf("round trip of %q: %q, %v", values, got, err)
		}
	}
	bad := [][]byte{nil, {0}, {2, 1, 0}, {1}, {1, 0}, {1, 2, 1, 'a'}, {1, 1, 5, 'a'}, {1, 1, 1, 'a', 'b'}, {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}}
	for _, b := range bad {
		if _, err := decodeBatch(b); err == nil {
			t.Errorf("decodeBatch(%v) accepted a malformed entry", b)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([][]byte{[]byte("a"), []byte("bc")}))
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		values, err := decodeBatch(b)
		if err != nil {
			return
		}
		// Lengths may be non-minimal varints, so compare values, not bytes.
		again, err := decodeBatch(encodeBatch(values))
		if err != nil || !slices.EqualFunc(again, values, bytes.Equal) {
			t.Fatalf("re-encoding %v: %q, %v", b, again, err)
		}
	})
}

func TestSnapHeader(t *testing.T) {
	h := snapHeader{next: 1 << 40, lowest: 7}
	got, err := readSnapHeader(bytes.NewReader(h.encode()))
	if err != nil || got != h {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range snapHeaderSize { // every byte: CRC-covered, the CRC, the reserved zeros
		b := h.encode()
		b[i] ^= 1
		if _, err := readSnapHeader(bytes.NewReader(b)); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	if _, err := readSnapHeader(bytes.NewReader(h.encode()[:10])); err == nil {
		t.Fatal("short header accepted")
	}
}

func FuzzReadSnapHeader(f *testing.F) {
	f.Add(snapHeader{next: 5, lowest: 1}.encode())
	f.Add([]byte("PLSNAP01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readSnapHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if !bytes.Equal(h.encode(), b[:snapHeaderSize]) {
			t.Fatalf("accepted header %x does not re-encode to itself", b[:snapHeaderSize])
		}
	})
}
