package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"unsafe"

	"github.com/proglog/proglog/internal/uvarint"
)

// On-disk layout constants; doc.go describes the formats byte by byte.
const (
	fileHeaderSize  = 32
	frameTypeRecord = 1 // a bare value
	frameTypeKeyed  = 2 // key, headers and value
)

const (
	storeMagic = "PLOGSTOR"
	indexMagic = "PLOGINDX"
)

// castagnoli is the CRC32C table; never modified after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// layout is what differs between the format versions of a segment: its
// frames and index entries. A segment keeps the version it was created
// with for life.
type layout struct {
	version    uint16
	headerSize int   // fixed part of a frame
	align      int64 // frames start at multiples of it
	entrySize  int64 // bytes per index entry
	minFrame   int64 // smallest frame (empty payload)
	maxPayload int   // largest payload the frame can describe
}

var (
	// layoutV1: 28-byte frame header, 8-byte alignment, index entries of
	// position and length.
	layoutV1 = &layout{version: 1, headerSize: 28, align: 8, entrySize: 8, minFrame: 32, maxPayload: maxRecordLimit}
	// layoutV2: 20-byte frame header, 4-byte alignment, index entries of
	// position alone. The length field has 30 bits.
	layoutV2 = &layout{version: 2, headerSize: 20, align: 4, entrySize: 4, minFrame: 20, maxPayload: 1<<30 - 1}
	// layoutNew is the version new segments are created with.
	layoutNew = layoutV2
)

func layoutFor(version uint16) *layout {
	switch version {
	case 1:
		return layoutV1
	case 2:
		return layoutV2
	}
	return nil
}

// frameSize is the bytes a record with a payload of n bytes takes in a
// store, padding included.
func (f *layout) frameSize(n int) int64 {
	return (int64(f.headerSize) + int64(n) + f.align - 1) &^ (f.align - 1)
}

// payloadSize is the length of the payload r is stored with: the bare
// value for a record without key and headers (a type 1 frame), else the
// keyed encoding (type 2).
func payloadSize(r *Record) int {
	if len(r.Key) == 0 && len(r.Headers) == 0 {
		return len(r.Value)
	}
	n := uvarintLen(len(r.Key)) + len(r.Key) + uvarintLen(len(r.Headers)) + len(r.Value)
	for _, h := range r.Headers {
		n += uvarintLen(len(h.Key)) + len(h.Key) + uvarintLen(len(h.Value)) + len(h.Value)
	}
	return n
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// appendFrame encodes one record frame onto dst; r.Offset and r.Time are
// ignored for offset and unixNano. The caller has checked that the payload
// fits f.maxPayload.
func (f *layout) appendFrame(dst []byte, offset uint64, unixNano int64, r *Record) []byte {
	start := len(dst)
	n := payloadSize(r)
	size := int(f.frameSize(n))
	if cap(dst)-start < size {
		grown := make([]byte, start, 2*cap(dst)+size)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+size]
	b := dst[start:]
	hs := f.headerSize
	typ := byte(frameTypeRecord)
	if len(r.Key) > 0 || len(r.Headers) > 0 {
		typ = frameTypeKeyed
		p := b[hs:hs]
		p = binary.AppendUvarint(p, uint64(len(r.Key)))
		p = append(p, r.Key...)
		p = binary.AppendUvarint(p, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			p = binary.AppendUvarint(p, uint64(len(h.Key)))
			p = append(p, h.Key...)
			p = binary.AppendUvarint(p, uint64(len(h.Value)))
			p = append(p, h.Value...)
		}
		copy(b[hs+len(p):], r.Value)
	} else {
		copy(b[hs:], r.Value)
	}
	clear(b[hs+n:])
	crcAt := hs - 4
	if f.version == 1 {
		b[0], b[1], b[2], b[3] = typ, 0, 0, 0
		binary.LittleEndian.PutUint32(b[4:8], uint32(n))
		binary.LittleEndian.PutUint64(b[8:16], offset)
		binary.LittleEndian.PutUint64(b[16:24], uint64(unixNano))
	} else {
		binary.LittleEndian.PutUint32(b[0:4], uint32(n)<<2|uint32(typ))
		binary.LittleEndian.PutUint32(b[4:8], uint32(offset))
		binary.LittleEndian.PutUint64(b[8:16], uint64(unixNano))
	}
	crc := crc32.Update(crc32.Checksum(b[:crcAt], castagnoli), castagnoli, b[hs:hs+n])
	binary.LittleEndian.PutUint32(b[crcAt:hs], crc)
	return dst
}

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	typ      byte
	valueLen int // payload length: the value, or for type 2 key, headers and value
	// offset is the record's offset (v1), or its low 32 bits until
	// decodeFrame has matched it with the offset wanted (v2).
	offset   uint64
	unixNano int64
	crc      uint32
	frame    int64 // the frame's size, padding included
}

func (h frameHeader) size() int64 { return h.frame }

// errFrameShort means the bytes end inside a frame (a torn write at the tail).
var errFrameShort = errors.New("frame extends past the end of the data")

// startsFrame reports whether c, the first byte of a frame or of a store
// header ('P'), starts a frame. The snapshot stream relies on no frame
// starting with 'P' (0x50): a v1 frame starts with its type, a v2 frame
// with a word whose low two bits are its type (0x50 has them zero).
func (f *layout) startsFrame(c byte) bool {
	if f.version == 1 {
		return c == frameTypeRecord || c == frameTypeKeyed
	}
	return c&3 == frameTypeRecord || c&3 == frameTypeKeyed
}

// parseFrameHeader checks the fixed part of a frame without trusting it:
// the length is compared with maxValue before anyone allocates for it.
func (f *layout) parseFrameHeader(b []byte, maxValue int) (frameHeader, error) {
	if len(b) < f.headerSize {
		return frameHeader{}, errFrameShort
	}
	var h frameHeader
	var n uint32
	if f.version == 1 {
		if b[1]|b[2]|b[3] != 0 && isFrameType(b[0]) {
			return frameHeader{}, errors.New("reserved frame bytes not zero")
		}
		h.typ, n = b[0], binary.LittleEndian.Uint32(b[4:8])
		h.offset = binary.LittleEndian.Uint64(b[8:16])
		h.unixNano = int64(binary.LittleEndian.Uint64(b[16:24]))
		h.crc = binary.LittleEndian.Uint32(b[24:28])
	} else {
		w := binary.LittleEndian.Uint32(b[0:4])
		if w == 0 {
			return frameHeader{}, errors.New("zero frame word (unwritten space)")
		}
		h.typ, n = byte(w&3), w>>2
		h.offset = uint64(binary.LittleEndian.Uint32(b[4:8]))
		h.unixNano = int64(binary.LittleEndian.Uint64(b[8:16]))
		h.crc = binary.LittleEndian.Uint32(b[16:20])
	}
	if !isFrameType(h.typ) {
		if h.typ == 0 {
			return frameHeader{}, errors.New("zero frame type (unwritten space)")
		}
		return frameHeader{}, fmt.Errorf("unknown frame type %d", h.typ)
	}
	if uint64(n) > uint64(maxValue) {
		return frameHeader{}, fmt.Errorf("record length %d exceeds the limit %d", n, maxValue)
	}
	h.valueLen = int(n)
	h.frame = f.frameSize(h.valueLen)
	return h, nil
}

// isFrameType reports whether t is a record frame's type.
func isFrameType(t byte) bool { return t == frameTypeRecord || t == frameTypeKeyed }

// holds reports whether a frame header holds offset want.
func (f *layout) holds(h frameHeader, want uint64) bool {
	if f.version == 1 {
		return h.offset == want
	}
	return h.offset == want&math.MaxUint32
}

// offsetFrom is the offset a frame found while looking for records at or
// after off holds, and false if it holds one below off. A v2 frame holds
// only the low 32 bits: it is taken to be the first offset at or after off
// with them, which is unambiguous since a segment holds fewer than 2^32
// records.
func (f *layout) offsetFrom(h frameHeader, off uint64) (uint64, bool) {
	if f.version == 1 {
		return h.offset, h.offset >= off
	}
	return off + uint64(uint32(h.offset)-uint32(off)), true
}

// decodeFrame decodes the frame at the start of b, which must be the record
// with offset want. The returned payload aliases b.
func (f *layout) decodeFrame(b []byte, want uint64, maxValue int) (frameHeader, []byte, error) {
	h, err := f.parseFrameHeader(b, maxValue)
	if err != nil {
		return h, nil, err
	}
	if !f.holds(h, want) {
		return h, nil, fmt.Errorf("frame holds offset %d, want %d", h.offset, want)
	}
	h.offset = want
	if int64(len(b)) < h.size() {
		return h, nil, errFrameShort
	}
	hs := f.headerSize
	payload := b[hs : hs+h.valueLen]
	if crc := crc32.Update(crc32.Checksum(b[:hs-4], castagnoli), castagnoli, payload); crc != h.crc {
		return h, nil, fmt.Errorf("crc mismatch: stored %08x, computed %08x", h.crc, crc)
	}
	return h, payload, nil
}

// decodeRecord fills r's key, headers and value from a checked frame's
// payload; they all alias payload, header keys too (strings over its bytes:
// the caller never writes to a read buffer). Headers are carved from
// *slab, which a batch read shares between its records, so a record costs
// no allocation of its own; left is how many records the read decodes from
// this one on, which sizes the first slab.
func decodeRecord(h frameHeader, payload []byte, r *Record, slab *[]Header, left int) error {
	if h.typ == frameTypeRecord {
		r.Value = payload[:len(payload):len(payload)]
		return nil
	}
	key, p, ok := uvarint.Field(payload)
	if !ok {
		return errors.New("bad key length")
	}
	count, k := uvarint.Read(p)
	if k <= 0 || count > uint64(len(p)-k)/2 { // a header takes at least two length bytes
		return errors.New("bad header count")
	}
	p = p[k:]
	var headers []Header
	if count > 0 {
		if cap(*slab)-len(*slab) < int(count) {
			// Sized first for this many headers on each record left, so
			// a read of like records allocates its slab once.
			*slab = make([]Header, 0, max(int(count), 2*cap(*slab), min(int(count)*left, 1<<14), 64))
		}
		start := len(*slab)
		for range count {
			var hk, hv []byte
			if hk, p, ok = uvarint.Field(p); !ok {
				return errors.New("bad header key length")
			}
			if hv, p, ok = uvarint.Field(p); !ok {
				return errors.New("bad header value length")
			}
			*slab = append(*slab, Header{Key: unsafe.String(unsafe.SliceData(hk), len(hk)), Value: hv})
		}
		headers = (*slab)[start:len(*slab):len(*slab)]
	}
	if len(key) == 0 && count == 0 {
		return errors.New("keyed frame with neither key nor headers") // never written: it would be type 1
	}
	if len(key) > 0 {
		r.Key = key
	}
	r.Headers = headers
	r.Value = p[:len(p):len(p)]
	return nil
}

// fileHeader encodes the 32-byte header of a store or index file.
func fileHeader(magic string, base uint64, version uint16) []byte {
	b := make([]byte, fileHeaderSize)
	copy(b, magic)
	binary.LittleEndian.PutUint16(b[8:10], version)
	binary.LittleEndian.PutUint64(b[16:24], base)
	binary.LittleEndian.PutUint32(b[24:28], crc32.Checksum(b[:24], castagnoli))
	return b
}

// checkFileHeader validates a store or index header and its base offset
// and returns the layout of its format version.
func checkFileHeader(b []byte, magic string, base uint64) (*layout, error) {
	if len(b) < fileHeaderSize {
		return nil, errFrameShort
	}
	if string(b[:8]) != magic {
		return nil, fmt.Errorf("bad magic %q", b[:8])
	}
	if crc := crc32.Checksum(b[:24], castagnoli); crc != binary.LittleEndian.Uint32(b[24:28]) {
		return nil, errors.New("header crc mismatch")
	}
	v := binary.LittleEndian.Uint16(b[8:10])
	f := layoutFor(v)
	if f == nil {
		return nil, fmt.Errorf("unsupported format version %d", v)
	}
	if got := binary.LittleEndian.Uint64(b[16:24]); got != base {
		return nil, fmt.Errorf("header base offset %d does not match file name %d", got, base)
	}
	return f, nil
}
