// Package uvarint reads the uvarint-length-prefixed fields that a record
// store's keyed frame (logstore) and a Raft command entry (cluster) are
// both made of: encoding/binary's uvarints, with the one-byte case, which
// most of a record's lengths take, read without a call.
package uvarint

import "encoding/binary"

// Read is binary.Uvarint: the value and the bytes it took, n <= 0 if b
// does not start with one.
func Read(b []byte) (v uint64, n int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return binary.Uvarint(b)
}

// Field splits the length-prefixed field at the start of b off the rest,
// clipped, so that appending to it writes over nothing after it; ok is
// false if b does not start with a whole one (rest is then b).
func Field(b []byte) (field, rest []byte, ok bool) {
	if len(b) > 0 && b[0] < 0x80 { // Read's one-byte case, without a call
		end := 1 + int(b[0])
		if end > len(b) {
			return nil, b, false
		}
		return b[1:end:end], b[end:], true
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, b, false
	}
	end := k + int(n)
	return b[k:end:end], b[end:], true
}
