package service

import (
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/protocodec"
	"github.com/proglog/proglog/logstore"
)

// produceRequest is a ProduceStream request as the service takes it: its
// records as the log takes them, not yet checked (checkRecords), aliasing
// the bytes or message it came from.
type produceRequest struct {
	recs    []logstore.Record
	single  bool // the request set record, not records
	topic   string
	part    uint32 // the partition asked for, if hasPart
	hasPart bool
}

// partition is the partition the request asks for, nil for none.
func (r *produceRequest) partition() *uint32 {
	if !r.hasPart {
		return nil
	}
	return &r.part
}

// fromProto takes a decoded request's records as the log takes them,
// appended to recs[:0] with their headers carved from *slab.
func fromProto(req *logv1.ProduceStreamRequest, recs []logstore.Record, slab *[]logstore.Header) produceRequest {
	r := produceRequest{recs: recs[:0], topic: req.GetTopic()}
	if req.Partition != nil {
		r.part, r.hasPart = *req.Partition, true
	}
	in := req.GetRecords()
	if len(in) == 0 && req.GetRecord() != nil {
		in, r.single = []*logv1.Record{req.GetRecord()}, true
	}
	for _, m := range in {
		r.recs = append(r.recs, logRecord(m, slab))
	}
	return r
}

// decodeProduce decodes a ProduceStreamRequest's encoding straight into
// the records the log takes, appended to recs[:0] with their headers
// carved from *slab, all aliasing data (header keys and the topic are
// strings over its bytes): a stream's requests no longer become record
// and header messages first, which vtprotobuf reset, checked and decoded
// at about a tenth of a keyed produce's server CPU.
//
// ok is false for anything but the plain encoding that protobuf-go,
// vtprotobuf and every client write: a tag longer than a byte, a known
// field in another wire type (protobuf-go keeps it as an unknown field),
// a second record field (protobuf merges the two), a string that is not
// UTF-8, a Timestamp with fields of its own, more than maxHeaders headers
// on a record, a length that is not minimal. The caller then decodes data by protobuf's rules
// (protocodec.DecodeInto, fromProto), so what is accepted, and what a
// request means, is protobuf's in every case (FuzzDecodeProduce).
func decodeProduce(data []byte, recs []logstore.Record, slab *[]logstore.Header) (req produceRequest, ok bool) {
	req.recs = recs[:0]
	var single logstore.Record
	hasSingle := false
	for len(data) > 0 {
		num, typ, rest, ok := tag(data)
		if !ok {
			return req, false
		}
		data = rest
		switch {
		case num <= 3 && typ == protowire.BytesType:
			var v []byte
			if v, data, ok = protocodec.LengthDelimited(data); !ok {
				return req, false
			}
			switch num {
			case 1:
				if hasSingle {
					return req, false
				}
				hasSingle = true
				if !decodeRecord(v, &single, slab) {
					return req, false
				}
			case 2:
				req.recs = append(req.recs, logstore.Record{})
				if !decodeRecord(v, &req.recs[len(req.recs)-1], slab) {
					return req, false
				}
			case 3:
				if !utf8.Valid(v) {
					return req, false
				}
				req.topic = unsafe.String(unsafe.SliceData(v), len(v))
			}
		case num == 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return req, false
			}
			data = data[n:]
			req.part, req.hasPart = uint32(v), true // protobuf truncates a uint32's varint
		default:
			if data, ok = skipUnknown(num, typ, data, 4); !ok {
				return req, false
			}
		}
	}
	if len(req.recs) == 0 && hasSingle {
		req.recs, req.single = append(req.recs, single), true
	}
	return req, true
}

// decodeRecord decodes a log.v1.Record's encoding into r (see
// decodeProduce); the offset and time a producer may set are checked and
// ignored.
func decodeRecord(b []byte, r *logstore.Record, slab *[]logstore.Header) bool {
	*r = logstore.Record{}
	start := len(*slab)
	for len(b) > 0 {
		num, typ, rest, ok := tag(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case num == 2 && typ == protowire.VarintType: // offset
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
		case num >= 1 && num <= 5 && num != 2 && typ == protowire.BytesType:
			var v []byte
			if v, b, ok = protocodec.LengthDelimited(b); !ok {
				return false
			}
			switch num {
			case 1:
				r.Value = v
			case 3:
				r.Key = v
			case 4:
				if len(*slab)-start == maxHeaders {
					return false // checkRecord's error, from the slow path
				}
				if cap(*slab) == 0 {
					*slab = make([]logstore.Header, 0, 64)
				}
				*slab = append(*slab, logstore.Header{})
				if !decodeHeader(v, &(*slab)[len(*slab)-1]) {
					return false
				}
			case 5:
				if !plainTimestamp(v) {
					return false
				}
			}
		default:
			if b, ok = skipUnknown(num, typ, b, 5); !ok {
				return false
			}
		}
	}
	if n := len(*slab); n > start {
		r.Headers = (*slab)[start:n:n]
	}
	return true
}

// decodeHeader decodes a log.v1.Header's encoding into h.
func decodeHeader(b []byte, h *logstore.Header) bool {
	for len(b) > 0 {
		num, typ, rest, ok := tag(b)
		if !ok {
			return false
		}
		b = rest
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			var v []byte
			if v, b, ok = protocodec.LengthDelimited(b); !ok {
				return false
			}
			if num == 2 {
				h.Value = v
			} else if utf8.Valid(v) {
				h.Key = unsafe.String(unsafe.SliceData(v), len(v))
			} else {
				return false
			}
			continue
		}
		if b, ok = skipUnknown(num, typ, b, 2); !ok {
			return false
		}
	}
	return true
}

// plainTimestamp reports whether b is a google.protobuf.Timestamp of
// seconds and nanos alone.
func plainTimestamp(b []byte) bool {
	for len(b) > 0 {
		num, typ, rest, ok := tag(b)
		if !ok || (num != 1 && num != 2) || typ != protowire.VarintType {
			return false
		}
		_, n := protowire.ConsumeVarint(rest)
		if n < 0 {
			return false
		}
		b = rest[n:]
	}
	return true
}

// tag reads a one-byte field tag: the fields decodeProduce knows all have
// one, and a longer tag sends the request to protobuf's rules.
func tag(b []byte) (protowire.Number, protowire.Type, []byte, bool) {
	if b[0] >= 0x80 || b[0]>>3 == 0 {
		return 0, 0, b, false
	}
	return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), b[1:], true
}

// skipUnknown skips the value of a field the message does not have (its
// numbers go up to known); a known number here came in another wire type.
func skipUnknown(num protowire.Number, typ protowire.Type, b []byte, known protowire.Number) ([]byte, bool) {
	if num <= known {
		return b, false
	}
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return b, false
	}
	return b[n:], true
}
