package service

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

// consumeWire is a ConsumeStreamResponse encoded straight from the store's
// records (protocodec.Appender), for streams under the binary codec: the
// same bytes as toProto and vtprotobuf's marshal give, without building
// the messages first: building, sizing and marshaling them was an eighth
// of a keyed consume's server CPU. JSON streams still send messages
// (toProto).
type consumeWire struct {
	recs []logstore.Record
	// field is the response field each record goes in: records (2) for
	// a batch, record (1) for a stream of single records.
	field int
}

// AppendProto appends the response's encoding to dst. A record's length
// comes before it but is known only after it is written: room for it is
// left at the size the previous record's took (a batch's records are
// alike), and the record moves in the rare case that was wrong. Sizing
// each record first, a second walk over its fields, took as long as
// writing it.
func (w *consumeWire) AppendProto(dst []byte) ([]byte, error) {
	tag := byte(w.field<<3) | byte(protowire.BytesType)
	room := 2 // records of 128 B to 16 KiB
	for i := range w.recs {
		dst = append(dst, tag)
		at := len(dst)
		dst = append(dst, zeros[:room]...)
		dst = appendRecord(dst, &w.recs[i])
		dst, room = putLength(dst, at, room)
	}
	return dst, nil
}

var zeros [binary.MaxVarintLen64]byte

// putLength writes the length of what follows dst[at:at+room], room bytes
// left for it, into them, moving what follows if its varint takes another
// number of bytes; it returns that number.
func putLength(dst []byte, at, room int) ([]byte, int) {
	n := len(dst) - at - room
	size := protowire.SizeVarint(uint64(n))
	if size != room {
		if size > room {
			dst = append(dst, zeros[:size-room]...)
		}
		copy(dst[at+size:], dst[at+room:at+room+n])
		dst = dst[:at+size+n]
	}
	appendVarint(dst[at:at], uint64(n)) // over the room, in place
	return dst, size
}

// appendRecord appends r's log.v1.Record encoding, fields in number order
// and empty ones left out, as protobuf-go and vtprotobuf write them.
func appendRecord(dst []byte, r *logstore.Record) []byte {
	if len(r.Value) > 0 {
		dst = appendBytes(dst, protocodec.TagValue, r.Value)
	}
	if r.Offset != 0 {
		dst = appendVarint(append(dst, protocodec.TagOffset), r.Offset)
	}
	if len(r.Key) > 0 {
		dst = appendBytes(dst, protocodec.TagKey, r.Key)
	}
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = append(dst, protocodec.TagHeader, 0) // most headers are under 128 B
		at := len(dst) - 1
		if len(h.Key) > 0 {
			dst = appendVarint(append(dst, protocodec.TagHKey), uint64(len(h.Key)))
			dst = append(dst, h.Key...)
		}
		if len(h.Value) > 0 {
			dst = appendBytes(dst, protocodec.TagHValue, h.Value)
		}
		dst, _ = putLength(dst, at, 1)
	}
	if !r.Time.IsZero() {
		// A Timestamp takes at most 17 bytes: its length takes one.
		dst = append(dst, protocodec.TagTime, 0)
		at := len(dst) - 1
		if s := r.Time.Unix(); s != 0 {
			dst = appendVarint(append(dst, protocodec.TagSeconds), uint64(s))
		}
		if ns := r.Time.Nanosecond(); ns != 0 {
			dst = appendVarint(append(dst, protocodec.TagNanos), uint64(ns))
		}
		dst[at] = byte(len(dst) - at - 1)
	}
	return dst
}

func appendBytes(dst []byte, tag byte, b []byte) []byte {
	return append(appendVarint(append(dst, tag), uint64(len(b))), b...)
}

// appendVarint is protowire.AppendVarint with the one-byte case, most of
// a record's lengths, inlined.
func appendVarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return protowire.AppendVarint(dst, v)
}
