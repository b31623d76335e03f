package protocodec

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Field numbers recordCounts counts (proto/log/v1/log.proto).
const (
	responseRecords = 2 // ConsumeStreamResponse.records
	recordHeaders   = 4 // Record.headers
	recordTime      = 5 // Record.time
)

// recordCounts is what a ConsumeStreamResponse's records need, counted
// while wellFormed checks it: per element of its records field,
// its headers and whether it has a time.
type recordCounts struct {
	shapes  []uint32 // per record: headers<<1 | time present
	headers int
	times   int
}

func (rc *recordCounts) reset() {
	rc.shapes, rc.headers, rc.times = rc.shapes[:0], 0, 0
}

// add starts counting a record of size bytes (tag aside), with left bytes
// of the response from it on.
func (rc *recordCounts) add(left, size int) {
	if cap(rc.shapes) == 0 {
		// Most responses are batches of like records: guess their number
		// from the first one's size.
		rc.shapes = make([]uint32, 0, left/(size+1)+1)
	}
	rc.shapes = append(rc.shapes, 0)
}

// note counts a field of the latest record, one wellFormed found of the
// right wire type.
func (rc *recordCounts) note(num protowire.Number) {
	last := &rc.shapes[len(rc.shapes)-1]
	switch num {
	case recordHeaders:
		*last += 2
		rc.headers++
	case recordTime:
		if *last&1 == 0 { // a time repeated is merged into one
			*last |= 1
			rc.times++
		}
	}
}

// recordSlabs is the memory a response's records are decoded into: one
// slab of Records, Headers and Timestamps, and the pointers to them that
// the response's slices hold.
type recordSlabs struct {
	recs  []logv1.Record
	ptrs  []*logv1.Record
	hdrs  []logv1.Header
	hptrs []*logv1.Header
	ts    []timestamppb.Timestamp
}

// layout hands m, empty and about to be decoded, the Record, Header and
// Timestamp messages its records need (rc), from s's slabs, made anew
// where they are too small and otherwise reused (emptied): one slab of
// each per response instead of one allocation per message. A keyed record
// decoded on its own is five objects, and allocating them was most of a
// consumer's decoding time. vtprotobuf's unmarshal (the pool feature,
// buf.gen.yaml) decodes into the messages a repeated field's slice already
// holds past its length and into a Time already set, so the decoded
// message is the one it would have made; a record without headers or time
// keeps them nil. The records of one response share their slabs' lifetime,
// as they already share the aliasing codec's copy of the bytes.
func (s *recordSlabs) layout(rc *recordCounts, m *logv1.ConsumeStreamResponse) {
	shapes := rc.shapes
	if len(shapes) == 0 {
		return
	}
	recs, ptrs := reuse(&s.recs, len(shapes)), reuse(&s.ptrs, len(shapes))
	hdrs, hptrs := reuse(&s.hdrs, rc.headers), reuse(&s.hptrs, rc.headers)
	for i := range hdrs {
		hptrs[i] = &hdrs[i]
	}
	ts := reuse(&s.ts, rc.times)
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

// Decoder decodes a stream's ConsumeStreamResponses into memory it reuses
// message after message: the Record, Header and Timestamp messages of one
// response, and the slices that point to them. For a consumer that is done
// with each response before it decodes the next: Unmarshal makes about
// 570 KB for the collector per thousand keyed records (the messages and
// the copy of the bytes they point into). The zero Decoder is ready to use.
//
// Decode reads the plain encoding (what proglog's server and protobuf's
// encoders write) itself, in one pass (decodeFast); anything else it
// leaves to the codec's path: wellFormed's check, layout and vtprotobuf's
// unmarshal, which a consumer spent about a third of its CPU in.
type Decoder struct {
	counts recordCounts
	slabs  recordSlabs
	resp   logv1.ConsumeStreamResponse
}

// Decode decodes data as Unmarshal would (the same message, accepted and
// refused alike), but without copying it: the message's bytes and strings
// point into data. The message, and all it points to, is valid until the
// next Decode, and data must not change meanwhile.
func (d *Decoder) Decode(data []byte) (*logv1.ConsumeStreamResponse, error) {
	if d.decodeFast(data) {
		return &d.resp, nil
	}
	return d.decodeSlow(data)
}

// decodeSlow is Decode by the codec's path, for what decodeFast leaves.
func (d *Decoder) decodeSlow(data []byte) (*logv1.ConsumeStreamResponse, error) {
	m := &d.resp
	// Not to vtprotobuf's pool (ResetVT would put it there): its bytes
	// point into data a previous Decode had.
	m.Record = nil
	err := unmarshal(data, m, &d.counts, func(vm vtMessage) error {
		m.Reset()
		d.slabs.layout(&d.counts, m)
		return vm.UnmarshalVTUnsafe(data)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
