package protocodec

import (
	"slices"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// decodeFast decodes data, a ConsumeStreamResponse's encoding, into d's
// message in one pass, its records, headers and times carved from d's
// slabs as they come and its bytes and strings pointing into data: what
// the slow path (unmarshal: wellFormed's check, layout, vtprotobuf's
// unmarshal) makes of it, at a fraction of the cost. In a consumer's
// profile that path's check was 18% of its CPU, utf8.Valid 2% and
// vtprotobuf's unmarshals about 15%.
//
// ok is false for anything but the plain encoding that protobuf-go,
// vtprotobuf and proglog's server (service/wire.go) write: a tag longer
// than a byte, a field decodeFast does not know or in another wire type
// (protobuf-go keeps it as an unknown field), a second record field or a
// record's value, offset, key or time twice (protobuf merges, or the last
// wins), a header with a field twice or out of order, a header key that
// is not UTF-8 (protobuf-go refuses it), a Timestamp other than seconds
// then nanos in [0, 1e9), a varint or length that is not minimal, longer
// than ten bytes or runs past its message. d's message then holds
// leftovers of the attempt, and Decode decodes data from scratch by the
// slow path, so what is accepted, and what a response means, is
// protobuf-go's in every case (FuzzDecode).
func (d *Decoder) decodeFast(data []byte) (ok bool) {
	m := &d.resp
	m.Reset()
	c := carver{s: &d.slabs, total: len(data)}
	// The slabs in full: decodeFast carves them by index, the slow path
	// (reuse) by capacity.
	s := c.s
	s.recs, s.hdrs, s.ts = s.recs[:cap(s.recs)], s.hdrs[:cap(s.hdrs)], s.ts[:cap(s.ts)]
	ptrs := s.ptrs[:0]
	s.hptrs = s.hptrs[:0]
	for len(data) > 0 {
		tag := data[0]
		v, rest, ok := LengthDelimited(data[1:])
		if !ok {
			return false
		}
		data = rest
		switch tag {
		case TagRecord:
			if m.Record != nil {
				return false
			}
			if m.Record = c.record(v, len(rest)); m.Record == nil {
				return false
			}
		case TagRecords:
			r := c.record(v, len(rest))
			if r == nil {
				return false
			}
			if len(ptrs) == cap(ptrs) {
				ptrs = slices.Grow(ptrs, c.size(len(ptrs), len(rest))-len(ptrs))
			}
			ptrs = append(ptrs, r)
		default:
			return false
		}
	}
	s.ptrs = ptrs
	if len(ptrs) > 0 {
		m.Records = ptrs
	}
	return true
}

// carver carves one response's messages from s's slabs, which hold the
// messages of the previous response: n of each taken so far.
type carver struct {
	s                 *recordSlabs
	total             int // bytes in the response
	nrecs, nhdrs, nts int
}

// record decodes b, a Record's encoding with left bytes of the response
// after it, into a Record from the slab. It returns nil for what
// decodeFast leaves to the slow path.
func (c *carver) record(b []byte, left int) *logv1.Record {
	r := carve(c, &c.s.recs, c.nrecs, left)
	c.nrecs++
	hptrs := c.s.hptrs
	start := len(hptrs)
	var seen byte // bit n set: singular field n read
	for len(b) > 0 {
		tag := b[0]
		if tag == TagOffset {
			if seen&(1<<2) != 0 {
				return nil
			}
			seen |= 1 << 2
			v, n := varint(b[1:])
			if n < 0 {
				return nil
			}
			r.Offset, b = v, b[1+n:]
			continue
		}
		v, rest, ok := shortDelimited(b[1:])
		if !ok {
			if v, rest, ok = longDelimited(b[1:]); !ok {
				return nil
			}
		}
		b = rest
		switch tag {
		case TagValue, TagKey, TagTime:
			bit := byte(1) << (tag >> 3)
			if seen&bit != 0 {
				return nil
			}
			seen |= bit
			switch tag {
			case TagValue:
				r.Value = v
			case TagKey:
				r.Key = v
			default:
				r.Time = carve(c, &c.s.ts, c.nts, left+len(b))
				c.nts++
				if !timestamp(v, r.Time) {
					return nil
				}
			}
		case TagHeader:
			h := carve(c, &c.s.hdrs, c.nhdrs, left+len(b))
			c.nhdrs++
			if !header(v, h) {
				return nil
			}
			if len(hptrs) == cap(hptrs) {
				hptrs = slices.Grow(hptrs, c.size(len(hptrs), left+len(b))-len(hptrs))
			}
			hptrs = append(hptrs, h)
		default:
			return nil
		}
	}
	if n := len(hptrs); n > start {
		// Capacity clipped: each record's headers are its own.
		r.Headers = hptrs[start:n:n]
	}
	c.s.hptrs = hptrs
	return r
}

// size is the length a slab (or pointer slice) of n elements, all taken,
// grows to when the response needs another, that one's bytes ending left
// bytes before the response's end: as many as the response needs if the
// rest is like what came before, with an eighth to spare, but at least
// twice n and at most 8n+256, so that a few records unlike the rest at
// the start cost a step or two more, never an outsize slab.
func (c *carver) size(n, left int) int {
	done := max(c.total-left, 1)
	need := int(uint64(n+1)*uint64(c.total)/uint64(done))*9/8 + 4
	return min(max(need, 2*n), 8*n+256)
}

// carve returns element i of *slab, emptied, for a response that took i
// before it, the element's bytes ending left bytes before the response's
// end. A slab used up is replaced by one of c.size's length: the elements
// taken stay in the old one, alive as long as the messages pointing to
// them, and the new one's first i go unused this time, but the next like
// response finds all it needs in the one slab.
func carve[T any](c *carver, slab *[]T, i, left int) *T {
	if i == len(*slab) {
		*slab = make([]T, c.size(i, left))
	}
	p := &(*slab)[i]
	var zero T
	*p = zero
	return p
}

// header decodes b, a Header's encoding, into h, empty: key then value,
// each at most once, as every encoder writes them.
func header(b []byte, h *logv1.Header) bool {
	if len(b) > 0 && b[0] == TagHKey {
		k, rest, ok := shortDelimited(b[1:])
		if !ok {
			if k, rest, ok = longDelimited(b[1:]); !ok {
				return false
			}
		}
		if !validUTF8(k) {
			return false
		}
		if len(k) > 0 {
			h.Key = unsafe.String(unsafe.SliceData(k), len(k))
		}
		b = rest
	}
	if len(b) > 0 && b[0] == TagHValue {
		v, rest, ok := shortDelimited(b[1:])
		if !ok {
			if v, rest, ok = longDelimited(b[1:]); !ok {
				return false
			}
		}
		h.Value, b = v, rest
	}
	return len(b) == 0
}

// timestamp decodes b, a google.protobuf.Timestamp's encoding, into t,
// empty: seconds then nanos, each at most once, nanos in [0, 1e9) (all a
// valid time has; protobuf-go would take any int32).
func timestamp(b []byte, t *timestamppb.Timestamp) bool {
	if len(b) > 0 && b[0] == TagSeconds {
		v, n := varint(b[1:])
		if n < 0 {
			return false
		}
		t.Seconds, b = int64(v), b[1+n:] // a negative one in ten bytes
	}
	if len(b) > 0 && b[0] == TagNanos {
		v, n := varint(b[1:])
		if n < 0 || v >= 1e9 {
			return false
		}
		t.Nanos, b = int32(v), b[1+n:]
	}
	return len(b) == 0
}

// validUTF8 is utf8.Valid, without its call for the short ASCII keys
// headers have.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}
