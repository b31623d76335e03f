package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/proglog/proglog/internal/uvarint"
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
	// Sized exactly: Raft holds the entry in its log cache and in flight
	// until it is applied, so slack here is heap the collector paces by.
	size := func(n int) int { return protowire.SizeVarint(uint64(n)) }
	n := 1 + 8 + size(len(recs))
	for i := range recs {
		r := &recs[i]
		n += size(len(r.Key)) + len(r.Key) + size(len(r.Headers)) + size(len(r.Value)) + len(r.Value)
		for _, h := range r.Headers {
			n += size(len(h.Key)) + len(h.Key) + size(len(h.Value)) + len(h.Value)
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
	// headers is the slab the records' headers were carved from, for
	// putHeaders once nothing uses them (nil when they have none).
	headers *[]logstore.Header
}

// count reads a count of items that take at least min bytes each.
func count(b []byte, min int) (n int, rest []byte, ok bool) {
	v, k := uvarint.Read(b)
	if k <= 0 || v > uint64((len(b)-k)/min) {
		return 0, b, false
	}
	return int(v), b[k:], true
}

// decodeEntry parses a command entry; everything aliases b, header keys
// too (strings over its bytes: Raft never writes to an entry's data once it
// is in the log). The headers of all records share one allocation.
func decodeEntry(b []byte) (decodedEntry, error) {
	if len(b) == 0 || (b[0] != entryAppend && b[0] != entryAppendV1) {
		return decodedEntry{}, fmt.Errorf("%w: unknown type", errBadEntry)
	}
	var e decodedEntry
	v1 := b[0] == entryAppendV1
	b = b[1:]
	minRecord := 1 // value length
	if !v1 {
		if len(b) < 8 {
			return decodedEntry{}, fmt.Errorf("%w: no time", errBadEntry)
		}
		e.at = time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
		b = b[8:]
		minRecord = 3 // key length, header count, value length
	}
	n, b, ok := count(b, minRecord)
	if !ok || n == 0 {
		return decodedEntry{}, fmt.Errorf("%w: bad record count", errBadEntry)
	}
	e.recs = getRecords(n)
	var slab []logstore.Header
	for i := range e.recs {
		rec := &e.recs[i]
		bad := func(what string) (decodedEntry, error) {
			putRecords(e.recs)
			return decodedEntry{}, fmt.Errorf("%w: record %d: bad %s", errBadEntry, i, what)
		}
		if !v1 {
			var key []byte
			if key, b, ok = uvarint.Field(b); !ok {
				return bad("key")
			}
			if len(key) > 0 {
				rec.Key = key
			}
			var h int
			if h, b, ok = count(b, 2); !ok { // a header takes at least two length bytes
				return bad("header count")
			}
			if h > 0 {
				if slab == nil {
					slab = getHeaders()
				}
				if cap(slab)-len(slab) < h {
					// The records before keep the old slab; only the
					// newest goes back to headerSlabs. Room for as many
					// headers in each record still to come (a batch's
					// records tend to carry alike headers), so that one
					// slab usually holds the entry's, but no more than
					// the bytes left could hold (two each at least).
					slab = make([]logstore.Header, 0, max(h, 2*cap(slab), min(h*(n-i), len(b)/2)))
				}
				start := len(slab)
				for range h {
					var k, v []byte
					if k, b, ok = uvarint.Field(b); !ok {
						return bad("header key")
					}
					if v, b, ok = uvarint.Field(b); !ok {
						return bad("header value")
					}
					slab = append(slab, logstore.Header{Key: unsafe.String(unsafe.SliceData(k), len(k)), Value: v})
				}
				rec.Headers = slab[start:len(slab):len(slab)]
			}
		}
		if rec.Value, b, ok = uvarint.Field(b); !ok {
			return bad("value")
		}
	}
	if len(b) != 0 {
		putRecords(e.recs)
		return decodedEntry{}, fmt.Errorf("%w: %d trailing bytes", errBadEntry, len(b))
	}
	if slab != nil {
		e.headers = &slab
	}
	return e, nil
}

// headerSlabs recycles the header slabs of decoded entries, as recordSlabs
// does their records: a keyed record's two headers were a third of what a
// node allocated per record once requests were pooled. The store writer
// hands a slab back once the records pointing into it are written.
var headerSlabs sync.Pool // of *[]logstore.Header

// maxPooledHeaders bounds the slabs kept for reuse.
const maxPooledHeaders = 1 << 15

// getHeaders returns an empty slab.
func getHeaders() []logstore.Header {
	if p, ok := headerSlabs.Get().(*[]logstore.Header); ok {
		return (*p)[:0]
	}
	return nil
}

// putHeaders hands a slab back for reuse, cleared so that it keeps no
// entry alive; nothing may use its headers afterwards. nil is ignored.
func putHeaders(p *[]logstore.Header) {
	if p == nil || cap(*p) > maxPooledHeaders {
		return
	}
	slab := (*p)[:cap(*p)]
	clear(slab)
	*p = slab[:0]
	headerSlabs.Put(p)
}

// recordSlabs recycles the record slices decodeEntry makes: every node
// decodes every entry it applies, and these slices were the largest part
// of what a replica allocates (a record is 104 bytes, more than a 100-byte
// value). The store writer copies an applied entry's records into its own
// batch and hands the slice back (putRecords).
var recordSlabs sync.Pool // of *[]logstore.Record

// maxPooledRecords bounds the slices kept for reuse (an entry's records).
const maxPooledRecords = 1 << 14

// getRecords returns n zero records.
func getRecords(n int) []logstore.Record {
	if p, ok := recordSlabs.Get().(*[]logstore.Record); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]logstore.Record, n, max(n, 128))
}

// putRecords hands recs back for reuse; nothing may use them afterwards.
// It clears them up to their capacity, so a pooled slice holds no entry's
// data alive.
func putRecords(recs []logstore.Record) {
	if cap(recs) > maxPooledRecords {
		return
	}
	recs = recs[:cap(recs)]
	clear(recs)
	recs = recs[:0]
	recordSlabs.Put(&recs)
}
