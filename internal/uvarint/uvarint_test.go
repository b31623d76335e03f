package uvarint

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestRead(t *testing.T) {
	for _, b := range [][]byte{
		{}, {0}, {0x7f}, {0x80}, {0x80, 0x01}, {0xff, 0xff, 0x03},
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // overflow
	} {
		v, n := Read(b)
		wv, wn := binary.Uvarint(b)
		if v != wv || n != wn {
			t.Errorf("Read(%x) = %d, %d; binary.Uvarint: %d, %d", b, v, n, wv, wn)
		}
	}
}

func TestField(t *testing.T) {
	long := bytes.Repeat([]byte{'x'}, 200)
	for _, tc := range []struct {
		name        string
		b           []byte
		field, rest []byte
		ok          bool
	}{
		{"one-byte length", []byte{3, 'a', 'b', 'c', 'd'}, []byte("abc"), []byte("d"), true},
		{"to the end", []byte{2, 'a', 'b'}, []byte("ab"), []byte{}, true},
		{"empty", []byte{0, 'd'}, []byte{}, []byte("d"), true},
		{"two-byte length", append([]byte{0xc8, 0x01}, long...), long, []byte{}, true},
		{"past the end", []byte{4, 'a', 'b', 'c'}, nil, []byte{4, 'a', 'b', 'c'}, false},
		{"no length", []byte{}, nil, []byte{}, false},
		{"unfinished length", []byte{0x80}, nil, []byte{0x80}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, rest, ok := Field(tc.b)
			if ok != tc.ok || !bytes.Equal(f, tc.field) || !bytes.Equal(rest, tc.rest) {
				t.Fatalf("Field = %q, %q, %v; want %q, %q, %v", f, rest, ok, tc.field, tc.rest, tc.ok)
			}
			if ok && cap(f) != len(f) {
				t.Fatalf("field of %d bytes has capacity %d: appending to it would overwrite the rest", len(f), cap(f))
			}
		})
	}
}
