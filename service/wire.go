package service

import (
	"google.golang.org/protobuf/encoding/protowire"

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

// The tags of the fields consumeWire writes.
const (
	tagValue   = 1<<3 | byte(protowire.BytesType)  // Record.value
	tagOffset  = 2<<3 | byte(protowire.VarintType) // Record.offset
	tagKey     = 3<<3 | byte(protowire.BytesType)  // Record.key
	tagHeader  = 4<<3 | byte(protowire.BytesType)  // Record.headers
	tagTime    = 5<<3 | byte(protowire.BytesType)  // Record.time
	tagHKey    = 1<<3 | byte(protowire.BytesType)  // Header.key
	tagHValue  = 2<<3 | byte(protowire.BytesType)  // Header.value
	tagSeconds = 1<<3 | byte(protowire.VarintType) // Timestamp.seconds
	tagNanos   = 2<<3 | byte(protowire.VarintType) // Timestamp.nanos
)

// AppendProto appends the response's encoding to dst.
func (w *consumeWire) AppendProto(dst []byte) ([]byte, error) {
	tag := byte(w.field<<3) | byte(protowire.BytesType)
	for i := range w.recs {
		r := &w.recs[i]
		dst = append(dst, tag)
		dst = protowire.AppendVarint(dst, uint64(recordSize(r)))
		dst = appendRecord(dst, r)
	}
	return dst, nil
}

// recordSize is the length of r's log.v1.Record encoding.
func recordSize(r *logstore.Record) int {
	n := 0
	if len(r.Value) > 0 {
		n += bytesField(len(r.Value))
	}
	if r.Offset != 0 {
		n += 1 + protowire.SizeVarint(r.Offset)
	}
	if len(r.Key) > 0 {
		n += bytesField(len(r.Key))
	}
	for i := range r.Headers {
		n += bytesField(headerSize(&r.Headers[i]))
	}
	if !r.Time.IsZero() {
		n += bytesField(timeSize(r))
	}
	return n
}

// appendRecord appends r's log.v1.Record encoding, fields in number order
// and empty ones left out, as protobuf-go and vtprotobuf write them.
func appendRecord(dst []byte, r *logstore.Record) []byte {
	if len(r.Value) > 0 {
		dst = appendBytes(dst, tagValue, r.Value)
	}
	if r.Offset != 0 {
		dst = protowire.AppendVarint(append(dst, tagOffset), r.Offset)
	}
	if len(r.Key) > 0 {
		dst = appendBytes(dst, tagKey, r.Key)
	}
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = protowire.AppendVarint(append(dst, tagHeader), uint64(headerSize(h)))
		if len(h.Key) > 0 {
			dst = protowire.AppendVarint(append(dst, tagHKey), uint64(len(h.Key)))
			dst = append(dst, h.Key...)
		}
		if len(h.Value) > 0 {
			dst = appendBytes(dst, tagHValue, h.Value)
		}
	}
	if !r.Time.IsZero() {
		dst = protowire.AppendVarint(append(dst, tagTime), uint64(timeSize(r)))
		if s := r.Time.Unix(); s != 0 {
			dst = protowire.AppendVarint(append(dst, tagSeconds), uint64(s))
		}
		if ns := r.Time.Nanosecond(); ns != 0 {
			dst = protowire.AppendVarint(append(dst, tagNanos), uint64(ns))
		}
	}
	return dst
}

func headerSize(h *logstore.Header) int {
	n := 0
	if len(h.Key) > 0 {
		n += bytesField(len(h.Key))
	}
	if len(h.Value) > 0 {
		n += bytesField(len(h.Value))
	}
	return n
}

// timeSize is the length of r.Time's google.protobuf.Timestamp encoding
// (toProto's seconds and nanos).
func timeSize(r *logstore.Record) int {
	n := 0
	if s := r.Time.Unix(); s != 0 {
		n += 1 + protowire.SizeVarint(uint64(s)) // negative seconds take ten bytes
	}
	if ns := r.Time.Nanosecond(); ns != 0 {
		n += 1 + protowire.SizeVarint(uint64(ns))
	}
	return n
}

// bytesField is the size of a length-delimited field of n bytes.
func bytesField(n int) int { return 1 + protowire.SizeBytes(n) }

func appendBytes(dst []byte, tag byte, b []byte) []byte {
	return protowire.AppendBytes(append(dst, tag), b)
}
