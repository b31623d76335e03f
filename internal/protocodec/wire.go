package protocodec

import "google.golang.org/protobuf/encoding/protowire"

// The one-byte tags (field number and wire type) of log.v1's record
// fields, as the plain encoding has them: for the code that writes and
// reads those messages' bytes itself (the server's consume responses,
// Decoder's fast path).
const (
	TagRecord  = 1<<3 | byte(protowire.BytesType)  // ConsumeStreamResponse.record
	TagRecords = 2<<3 | byte(protowire.BytesType)  // ConsumeStreamResponse.records
	TagValue   = 1<<3 | byte(protowire.BytesType)  // Record.value
	TagOffset  = 2<<3 | byte(protowire.VarintType) // Record.offset
	TagKey     = 3<<3 | byte(protowire.BytesType)  // Record.key
	TagHeader  = 4<<3 | byte(protowire.BytesType)  // Record.headers
	TagTime    = 5<<3 | byte(protowire.BytesType)  // Record.time
	TagHKey    = 1<<3 | byte(protowire.BytesType)  // Header.key
	TagHValue  = 2<<3 | byte(protowire.BytesType)  // Header.value
	TagSeconds = 1<<3 | byte(protowire.VarintType) // Timestamp.seconds
	TagNanos   = 2<<3 | byte(protowire.VarintType) // Timestamp.nanos
)

// varint reads a varint in its shortest encoding; n < 0 for any other, or
// none.
func varint(b []byte) (v uint64, n int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return longVarint(b)
}

// longVarint is varint's for more than one byte.
func longVarint(b []byte) (v uint64, n int) {
	if len(b) > 1 && b[1] < 0x80 && b[1] != 0 { // a record's length
		return uint64(b[0]&0x7f) | uint64(b[1])<<7, 2
	}
	v, n = protowire.ConsumeVarint(b)
	if n < 0 || b[n-1] == 0 { // a last byte of 0 adds nothing
		return 0, -1
	}
	return v, n
}

// LengthDelimited reads a length-delimited field's value off the front
// of b, the bytes after its tag, clipped: code appending to one field
// writes over no other. ok is false for a length that is not minimal or
// that runs past b; the plain encoding has neither, and a one-pass decoder
// of it (Decoder's, the service's of produce requests) leaves anything
// else to protobuf's rules.
func LengthDelimited(b []byte) (v, rest []byte, ok bool) {
	if v, rest, ok = shortDelimited(b); ok {
		return v, rest, ok
	}
	return longDelimited(b)
}

// shortDelimited is LengthDelimited for a length under 128, most of a
// record's fields, and false for any other: small enough for the compiler
// to inline where each field of a record is read, which LengthDelimited
// is not.
func shortDelimited(b []byte) (v, rest []byte, ok bool) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		n := 1 + int(b[0])
		return b[1:n:n], b[n:], true
	}
	return nil, b, false
}

// longDelimited is LengthDelimited for any length.
func longDelimited(b []byte) (v, rest []byte, ok bool) {
	l, n := varint(b)
	if n < 0 || l > uint64(len(b)-n) {
		return nil, b, false
	}
	e := n + int(l)
	return b[n:e:e], b[e:], true
}
