package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/proglog/proglog/logstore"
)

// A raft command entry holds one batch of records. Integers are little
// endian; uvarints are encoding/binary's.
//
// Type 2, written since records have keys, headers and times:
//
//	0   1  type: 2
//	1   8  the leader's clock when it proposed the entry, Unix nanoseconds
//	9   -  uvarint count, then count records, each:
//	         uvarint key length, key
//	         uvarint header count, then per header:
//	           uvarint key length, key (UTF-8), uvarint value length, value
//	         uvarint value length, value
//
// Type 1, written before (still applied, never written):
//
//	0   1  type: 1
//	1   -  uvarint count, then count × (uvarint length, value bytes)
//
// Its records have no key or headers, and their time is the one the leader
// put on the Raft entry when it appended it (raft.Log.AppendedAt). Nothing
// follows the last value of either type. The FSM turns the proposed time
// into the records' time (see fsm.stamp), so that times never decrease.
const (
	entryAppendV1 = 1
	entryAppend   = 2
)

var errBadEntry = errors.New("cluster: malformed raft entry")

// encodeRecords encodes recs as one type 2 entry proposed at unixNano;
// their offsets and times are ignored.
func encodeRecords(unixNano int64, recs []logstore.Record) []byte {
	n := 1 + 8 + binary.MaxVarintLen64
	for i := range recs {
		r := &recs[i]
		n += 3*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, entryAppend)
	b = binary.LittleEndian.AppendUint64(b, uint64(unixNano))
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		b = binary.AppendUvarint(b, uint64(len(r.Key)))
		b = append(b, r.Key...)
		b = binary.AppendUvarint(b, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			b = binary.AppendUvarint(b, uint64(len(h.Key)))
			b = append(b, h.Key...)
			b = binary.AppendUvarint(b, uint64(len(h.Value)))
			b = append(b, h.Value...)
		}
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

// decodedEntry is a command entry's records; at is the proposed time, zero
// for a type 1 entry.
type decodedEntry struct {
	at   time.Time
	recs []logstore.Record
}

// entryReader walks an entry without trusting it.
type entryReader struct {
	b   []byte
	err error
}

// uvarint reads a uvarint; what (and suffix) name it in the error, which is
// only formatted when there is one: this runs for every record applied.
func (r *entryReader) uvarint(what, suffix string) uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: bad %s%s", errBadEntry, what, suffix)
		return 0
	}
	r.b = r.b[k:]
	return v
}

// bytes returns the next length-prefixed field, aliasing the entry.
func (r *entryReader) bytes(what string) []byte {
	n := r.uvarint(what, " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s claims %d bytes, %d left", errBadEntry, what, n, len(r.b))
		return nil
	}
	f := r.b[:n:n]
	r.b = r.b[n:]
	return f
}

// count reads a count of items that take at least min bytes each.
func (r *entryReader) count(what string, min int) int {
	n := r.uvarint(what, "")
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = fmt.Errorf("%w: %d %s for %d bytes", errBadEntry, n, what, len(r.b))
	}
	return int(n)
}

// decodeEntry parses a command entry; everything aliases b, header keys
// too (strings over its bytes: Raft never writes to an entry's data once it
// is in the log). The headers of all records share one allocation.
func decodeEntry(b []byte) (decodedEntry, error) {
	if len(b) == 0 || (b[0] != entryAppend && b[0] != entryAppendV1) {
		return decodedEntry{}, fmt.Errorf("%w: unknown type", errBadEntry)
	}
	var e decodedEntry
	r := entryReader{b: b[1:]}
	v1 := b[0] == entryAppendV1
	if !v1 {
		if len(r.b) < 8 {
			return decodedEntry{}, fmt.Errorf("%w: no time", errBadEntry)
		}
		e.at = time.Unix(0, int64(binary.LittleEndian.Uint64(r.b)))
		r.b = r.b[8:]
	}
	minRecord := 1
	if !v1 {
		minRecord = 3 // key length, header count, value length
	}
	n := r.count("records", minRecord)
	if r.err == nil && n == 0 {
		r.err = fmt.Errorf("%w: no records", errBadEntry)
	}
	if r.err != nil {
		return decodedEntry{}, r.err
	}
	e.recs = make([]logstore.Record, n)
	var slab []logstore.Header
	for i := range e.recs {
		rec := &e.recs[i]
		if !v1 {
			if key := r.bytes("key"); len(key) > 0 {
				rec.Key = key
			}
			if h := r.count("headers", 2); h > 0 && r.err == nil {
				if cap(slab)-len(slab) < h {
					slab = make([]logstore.Header, 0, max(h, 2*cap(slab), 16))
				}
				start := len(slab)
				for range h {
					k := r.bytes("header key")
					slab = append(slab, logstore.Header{Key: unsafe.String(unsafe.SliceData(k), len(k)), Value: r.bytes("header value")})
				}
				rec.Headers = slab[start:len(slab):len(slab)]
			}
		}
		rec.Value = r.bytes("value")
		if r.err != nil {
			return decodedEntry{}, fmt.Errorf("record %d: %w", i, r.err)
		}
	}
	if len(r.b) != 0 {
		return decodedEntry{}, fmt.Errorf("%w: %d trailing bytes", errBadEntry, len(r.b))
	}
	return e, nil
}
