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
	var s recordSlabs
	s.layout(b, m)
}

// recordSlabs is the memory a response's records are decoded into: one
// slab of Records, Headers and Timestamps, and the pointers to them that
// the response's slices hold.
type recordSlabs struct {
	shapes []uint32 // per record: headers<<1 | time present
	recs   []logv1.Record
	ptrs   []*logv1.Record
	hdrs   []logv1.Header
	hptrs  []*logv1.Header
	ts     []timestamppb.Timestamp
}

// layout counts the records, headers and times of the response in b and
// hands m empty messages for them from s's slabs, made anew where they are
// too small and otherwise reused (emptied). It does nothing for bytes that
// do not parse.
func (s *recordSlabs) layout(b []byte, m *logv1.ConsumeStreamResponse) {
	shapes := s.shapes[:0]
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
		if cap(shapes) == 0 {
			// Most responses are batches of like records: guess their
			// number from the first one's size.
			shapes = make([]uint32, 0, len(b)/(len(rec)+n)+1)
		}
		shapes = append(shapes, shape)
		headers += int(shape >> 1)
		times += int(shape & 1)
	}
	s.shapes = shapes
	if len(shapes) == 0 {
		return
	}
	recs, ptrs := reuse(&s.recs, len(shapes)), reuse(&s.ptrs, len(shapes))
	hdrs, hptrs := reuse(&s.hdrs, headers), reuse(&s.hptrs, headers)
	for i := range hdrs {
		hptrs[i] = &hdrs[i]
	}
	ts := reuse(&s.ts, times)
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

// reuse returns (*slab)[:n] emptied, making a new slab if it is shorter.
func reuse[T any](slab *[]T, n int) []T {
	if cap(*slab) < n {
		*slab = make([]T, n)
		return *slab
	}
	s := (*slab)[:n]
	clear(s)
	return s
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

// Decoder decodes a stream's ConsumeStreamResponses into memory it reuses
// message after message: the Record, Header and Timestamp messages of one
// response, and the slices that point to them. For a consumer that is done
// with each response before it decodes the next: a batch of a thousand
// keyed records otherwise makes about half a megabyte of messages for the
// collector. The zero Decoder is ready to use.
type Decoder struct {
	slabs recordSlabs
	resp  logv1.ConsumeStreamResponse
}

// Decode decodes data as Unmarshal would (the same message, accepted and
// refused alike), but without copying it: the message's bytes and strings
// point into data. The message, and all it points to, is valid until the
// next Decode, and data must not change meanwhile.
func (d *Decoder) Decode(data []byte) (*logv1.ConsumeStreamResponse, error) {
	m := &d.resp
	// Not to vtprotobuf's pool (ResetVT would put it there): its bytes
	// point into data a previous Decode had.
	m.Record = nil
	err := unmarshal(data, m, func(vm vtMessage) error {
		m.Reset()
		d.slabs.layout(data, m)
		return vm.UnmarshalVTUnsafe(data)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
