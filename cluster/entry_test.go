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
