package cluster

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// encodeV1 writes a first-format entry, as older versions did.
func encodeV1(values [][]byte) []byte {
	b := []byte{entryAppendV1}
	b = binary.AppendUvarint(b, uint64(len(values)))
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

func sameRecords(a, b []logstore.Record) bool {
	return slices.EqualFunc(a, b, func(x, y logstore.Record) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value) &&
			slices.EqualFunc(x.Headers, y.Headers, func(p, q logstore.Header) bool {
				return p.Key == q.Key && bytes.Equal(p.Value, q.Value)
			})
	})
}

func TestEntryEncoding(t *testing.T) {
	tests := [][]logstore.Record{
		{{}},
		{{Value: []byte("a")}},
		{{Value: []byte("one")}, {Key: []byte("k")}, {Value: bytes.Repeat([]byte{0xff}, 300)}},
		{{Key: []byte("k"), Headers: []logstore.Header{{Key: "a", Value: []byte("1")}, {Key: "a"}, {Key: "ü", Value: []byte{0}}}, Value: []byte("v")}},
	}
	many := make([]logstore.Record, 200) // a count of two varint bytes
	for i := range many {
		many[i] = logstore.Record{Key: bytes.Repeat([]byte{'k'}, i), Value: bytes.Repeat([]byte{'v'}, 100*i),
			Headers: []logstore.Header{{Key: string(bytes.Repeat([]byte{'h'}, i)), Value: bytes.Repeat([]byte{'x'}, 3*i)}}}
	}
	tests = append(tests, many)
	for _, recs := range tests {
		b := encodeRecords(-42, recs)
		if len(b) != cap(b) {
			// Raft keeps the entry until it is applied: no slack.
			t.Errorf("encoding of %d records: %d bytes in a buffer of %d", len(recs), len(b), cap(b))
		}
		got, err := decodeEntry(b)
		if err != nil || !sameRecords(got.recs, recs) || got.at.UnixNano() != -42 {
			t.Fatalf("round trip of %+v: %+v, %v", recs, got, err)
		}
	}
	bad := [][]byte{nil, {0}, {3, 1, 0}, {2}, {2, 0, 0, 0, 0, 0, 0, 0, 0}, {2, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, {2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1},
		{1}, {1, 0}, {1, 2, 1, 'a'}, {1, 1, 5, 'a'}, {1, 1, 1, 'a', 'b'}, {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}}
	for _, b := range bad {
		if _, err := decodeEntry(b); err == nil {
			t.Errorf("decodeEntry(%v) accepted a malformed entry", b)
		}
	}
}

// TestEntryV1 reads entries of the first format, as written before records
// had keys, headers and times: values only, no proposed time.
func TestEntryV1(t *testing.T) {
	values := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{0xff}, 300)}
	got, err := decodeEntry(encodeV1(values))
	if err != nil || !got.at.IsZero() || len(got.recs) != len(values) {
		t.Fatalf("decodeEntry = %+v, %v", got, err)
	}
	for i, r := range got.recs {
		if !bytes.Equal(r.Value, values[i]) || r.Key != nil || r.Headers != nil {
			t.Fatalf("record %d = %+v", i, r)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeRecords(5, []logstore.Record{{Value: []byte("a")}, {Key: []byte("k"), Headers: []logstore.Header{{Key: "h"}}, Value: []byte("bc")}}))
	f.Add(encodeV1([][]byte{[]byte("a"), []byte("bc")}))
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		// Lengths may be non-minimal varints, so compare records, not bytes.
		again, err := decodeEntry(encodeRecords(e.at.UnixNano(), e.recs))
		if err != nil || !sameRecords(again.recs, e.recs) {
			t.Fatalf("re-encoding %v: %+v, %v", b, again, err)
		}
	})
}

func TestSnapHeader(t *testing.T) {
	for _, h := range []snapHeader{
		{next: 1 << 40, lowest: 7, last: -3, meta: []byte{}},
		{next: 9, lowest: 2, last: 5, meta: []byte("the catalogue")},
	} {
		enc := h.encode()
		got, err := readSnapHeader(bytes.NewReader(enc))
		if err != nil || !sameSnapHeader(got, h) {
			t.Fatalf("round trip: %+v, %v", got, err)
		}
		if n := snapHeaderLen(enc[:36]); n != len(enc) {
			t.Fatalf("snapHeaderLen = %d, want %d", n, len(enc))
		}
		for i := range enc { // every byte: CRC-covered, the CRC, the reserved zeros, the catalogue
			b := h.encode()
			b[i] ^= 1
			if _, err := readSnapHeader(bytes.NewReader(b)); err == nil {
				t.Fatalf("flipping byte %d went unnoticed", i)
			}
		}
		if _, err := readSnapHeader(bytes.NewReader(enc[:len(enc)-1])); err == nil {
			t.Fatal("short header accepted")
		}
	}
	// Headers older versions wrote: no catalogue, and in the first no
	// time floor.
	v2 := make([]byte, snapHeaderSizeV2)
	copy(v2, "PLSNAP02")
	binary.LittleEndian.PutUint64(v2[8:], 9)
	binary.LittleEndian.PutUint64(v2[16:], 2)
	binary.LittleEndian.PutUint64(v2[24:], 77)
	binary.LittleEndian.PutUint32(v2[32:], crc32.Checksum(v2[:32], castagnoli))
	if got, err := readSnapHeader(bytes.NewReader(v2)); err != nil || !sameSnapHeader(got, snapHeader{next: 9, lowest: 2, last: 77}) || got.meta != nil {
		t.Fatalf("second-version header: %+v, %v", got, err)
	}
	v1 := make([]byte, snapHeaderSizeV1)
	copy(v1, "PLSNAP01")
	binary.LittleEndian.PutUint64(v1[8:], 9)
	binary.LittleEndian.PutUint64(v1[16:], 2)
	binary.LittleEndian.PutUint32(v1[24:], crc32.Checksum(v1[:24], castagnoli))
	if got, err := readSnapHeader(bytes.NewReader(v1)); err != nil || !sameSnapHeader(got, snapHeader{next: 9, lowest: 2}) {
		t.Fatalf("first-version header: %+v, %v", got, err)
	}
	if snapHeaderLen(v1) != snapHeaderSizeV1 || snapHeaderLen(v2) != snapHeaderSizeV2 || snapHeaderLen([]byte("PLSNAP04")) != 0 {
		t.Fatal("snapHeaderLen")
	}
}

func sameSnapHeader(a, b snapHeader) bool {
	return a.next == b.next && a.lowest == b.lowest && a.last == b.last && bytes.Equal(a.meta, b.meta)
}

func FuzzReadSnapHeader(f *testing.F) {
	f.Add(snapHeader{next: 5, lowest: 1}.encode())
	f.Add(snapHeader{next: 5, lowest: 1, meta: []byte("x")}.encode())
	f.Add([]byte("PLSNAP01"))
	f.Add([]byte("PLSNAP02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readSnapHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		size := snapHeaderLen(b)
		if size == 0 || size > len(b) {
			t.Fatalf("accepted header %x, but snapHeaderLen says %d", b, size)
		}
		if [8]byte(b[:8]) == snapMagic && !bytes.Equal(h.encode(), b[:size]) {
			t.Fatalf("accepted header %x does not re-encode to itself", b[:size])
		}
	})
}

// TestRecycledRecords: a record slice handed back holds nothing of the
// entry it was decoded from (a reused one must start as zero records, and a
// pooled one must not keep an entry's data alive), up to its capacity.
func TestRecycledRecords(t *testing.T) {
	keyed := []logstore.Record{
		{Key: []byte("k1"), Headers: []logstore.Header{{Key: "h", Value: []byte("v")}}, Value: []byte("one")},
		{Key: []byte("k2"), Value: []byte("two")},
		{Value: []byte("three")},
	}
	e, err := decodeEntry(encodeRecords(1, keyed))
	if err != nil {
		t.Fatal(err)
	}
	recs := e.recs
	putRecords(recs[1:]) // as the store writer does with a run that starts past held records
	for i, r := range recs[1:cap(recs)] {
		if r.Key != nil || r.Headers != nil || r.Value != nil {
			t.Fatalf("record %d after putRecords: %+v, want zero", i+1, r)
		}
	}
	for range 10 { // the pool may hand back any slice: each must be zero
		got := getRecords(3)
		for i, r := range got {
			if r.Key != nil || r.Headers != nil || r.Value != nil || !r.Time.IsZero() {
				t.Fatalf("getRecords: record %d is %+v, want zero", i, r)
			}
		}
		got[0].Value = []byte("x")
		putRecords(got)
	}
}

// TestRecycledHeaders: an entry's header slab comes back empty and
// cleared (no entry kept alive), and a slab from the pool decodes the next
// entry's headers right; an entry without headers takes none.
func TestRecycledHeaders(t *testing.T) {
	keyed := []logstore.Record{
		{Key: []byte("k1"), Headers: []logstore.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}, Value: []byte("one")},
		{Value: []byte("two")},
		{Headers: []logstore.Header{{Key: "c", Value: []byte("3")}}, Value: []byte("three")},
	}
	plain, err := decodeEntry(encodeRecords(1, []logstore.Record{{Value: []byte("x")}}))
	if err != nil || plain.headers != nil {
		t.Fatalf("an entry without headers: slab %v, %v", plain.headers, err)
	}
	for round := range 10 { // the pool may hand back any slab
		e, err := decodeEntry(encodeRecords(1, keyed))
		if err != nil || !sameRecords(e.recs, keyed) {
			t.Fatalf("round %d: %+v, %v", round, e.recs, err)
		}
		if e.headers == nil || len(*e.headers) != 3 {
			t.Fatalf("round %d: slab %v, want the 3 headers", round, e.headers)
		}
		p := e.headers
		putHeaders(p)
		if len(*p) != 0 {
			t.Fatalf("round %d: slab of %d headers after putHeaders", round, len(*p))
		}
		for i, h := range (*p)[:cap(*p)] {
			if h.Key != "" || h.Value != nil {
				t.Fatalf("round %d: header %d after putHeaders: %+v, want zero", round, i, h)
			}
		}
	}
}

// TestHeaderSlabSized: with no slab to reuse, an entry whose records carry
// alike headers decodes them all into one slab, made once, not into a
// slab regrown (and dropped) several times over the entry.
func TestHeaderSlabSized(t *testing.T) {
	recs := make([]logstore.Record, 100)
	for i := range recs {
		recs[i] = logstore.Record{
			Key:     []byte("key"),
			Headers: []logstore.Header{{Key: "content-type", Value: []byte("text/x1")}, {Key: "trace-id", Value: []byte("01234567")}},
			Value:   []byte("value"),
		}
	}
	for getHeaders() != nil { // empty the pool: the slab is made here
	}
	e, err := decodeEntry(encodeRecords(1, recs))
	if err != nil || !sameRecords(e.recs, recs) {
		t.Fatalf("decode: %v", err)
	}
	if e.headers == nil || len(*e.headers) != 200 || cap(*e.headers) != 200 {
		t.Fatalf("slab %d of cap %d, want all 200 headers in one slab of 200", len(*e.headers), cap(*e.headers))
	}
	if &e.recs[0].Headers[0] != &(*e.headers)[0] {
		t.Fatal("the first record's headers are not in the entry's slab")
	}
}
