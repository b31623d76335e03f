package protocodec

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Field numbers presizeRecords reads (proto/log/v1/log.proto).
const (
	responseRecords = 2 // ConsumeStreamResponse.records
	recordHeaders   = 4 // Record.headers
	recordTime      = 5 // Record.time
)

// presizeRecords gives a ConsumeStreamResponse about to be decoded from b
// the Record, Header and Timestamp messages its records need, made in one
// slab of each per response instead of one allocation per message: a
// keyed record decoded on its own is five objects, and allocating them was
// most of a consumer's decoding time. vtprotobuf's unmarshal (the pool
// feature, buf.gen.yaml) decodes into the messages a repeated field's
// slice already holds past its length and into a Time already set, so the
// decoded message is the one it would have made; a record without headers
// or time keeps them nil. The records of one response share their slabs'
// lifetime, as they already share the aliasing codec's copy of b. m is
// empty (Unmarshal resets it first).
//
// It does nothing for bytes that do not parse; the decoder then allocates
// as usual and reports what is wrong.
func presizeRecords(b []byte, m *logv1.ConsumeStreamResponse) {
	var shapes []uint32 // per record: headers<<1 | time present
	headers, times := 0, 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if num != responseRecords || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		rec, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		shape, ok := recordShape(rec)
		if !ok {
			return
		}
		if shapes == nil {
			// Most responses are batches of like records: guess their
			// number from the first one's size.
			shapes = make([]uint32, 0, len(b)/(len(rec)+n)+1)
		}
		shapes = append(shapes, shape)
		headers += int(shape >> 1)
		times += int(shape & 1)
	}
	if len(shapes) == 0 {
		return
	}
	recs := make([]logv1.Record, len(shapes))
	ptrs := make([]*logv1.Record, len(shapes))
	var (
		hdrs  []logv1.Header
		hptrs []*logv1.Header
		ts    []timestamppb.Timestamp
	)
	if headers > 0 {
		hdrs, hptrs = make([]logv1.Header, headers), make([]*logv1.Header, headers)
		for i := range hdrs {
			hptrs[i] = &hdrs[i]
		}
	}
	if times > 0 {
		ts = make([]timestamppb.Timestamp, times)
	}
	for i, shape := range shapes {
		r := &recs[i]
		ptrs[i] = r
		if h := int(shape >> 1); h > 0 {
			// Length 0 and capacity h: the decoder fills them in order.
			r.Headers, hptrs = hptrs[:0:h], hptrs[h:]
		}
		if shape&1 != 0 {
			r.Time, ts = &ts[0], ts[1:]
		}
	}
	m.Records = ptrs[:0]
}

// recordShape counts a Record's headers and tells whether it has a time.
// Nearly every tag and length of a record is one byte: those skip
// protowire's calls (this runs for every field of every record).
func recordShape(b []byte) (shape uint32, ok bool) {
	headers, time := uint32(0), uint32(0)
	for len(b) > 0 {
		var (
			num protowire.Number
			typ protowire.Type
		)
		if b[0] < 0x80 {
			num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
			b = b[1:]
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b); n < 0 {
				return 0, false
			}
			b = b[n:]
		}
		if typ == protowire.BytesType {
			switch num {
			case recordHeaders:
				headers++
			case recordTime:
				time = 1
			}
			if len(b) > 0 && b[0] < 0x80 {
				if int(b[0]) >= len(b) {
					return 0, false
				}
				b = b[1+int(b[0]):]
				continue
			}
		}
		n := protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
	}
	if headers >= 1<<31 {
		return 0, false
	}
	return headers<<1 | time, true
}
