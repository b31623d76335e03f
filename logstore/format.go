package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"
)

// On-disk layout constants; doc.go describes the format byte by byte.
const (
	formatVersion   = 1
	fileHeaderSize  = 32
	frameHeaderSize = 28
	frameAlign      = 8
	indexEntrySize  = 8
	frameTypeRecord = 1 // a bare value
	frameTypeKeyed  = 2 // key, headers and value
	minFrameSize    = (frameHeaderSize + frameAlign - 1) &^ (frameAlign - 1)
)

const (
	storeMagic = "PLOGSTOR"
	indexMagic = "PLOGINDX"
)

// castagnoli is the CRC32C table; never modified after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize is the bytes a record with a payload of n bytes takes in a
// store, padding included.
func frameSize(n int) int64 {
	return (frameHeaderSize + int64(n) + frameAlign - 1) &^ (frameAlign - 1)
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
// ignored for offset and unixNano.
func appendFrame(dst []byte, offset uint64, unixNano int64, r *Record) []byte {
	start := len(dst)
	n := payloadSize(r)
	size := int(frameSize(n))
	if cap(dst)-start < size {
		grown := make([]byte, start, 2*cap(dst)+size)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+size]
	b := dst[start:]
	b[0] = frameTypeRecord
	if len(r.Key) > 0 || len(r.Headers) > 0 {
		b[0] = frameTypeKeyed
		p := b[frameHeaderSize:frameHeaderSize]
		p = binary.AppendUvarint(p, uint64(len(r.Key)))
		p = append(p, r.Key...)
		p = binary.AppendUvarint(p, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			p = binary.AppendUvarint(p, uint64(len(h.Key)))
			p = append(p, h.Key...)
			p = binary.AppendUvarint(p, uint64(len(h.Value)))
			p = append(p, h.Value...)
		}
		copy(b[frameHeaderSize+len(p):], r.Value)
	} else {
		copy(b[frameHeaderSize:], r.Value)
	}
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
	binary.LittleEndian.PutUint64(b[8:16], offset)
	binary.LittleEndian.PutUint64(b[16:24], uint64(unixNano))
	clear(b[frameHeaderSize+n:])
	crc := crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, b[frameHeaderSize:frameHeaderSize+n])
	binary.LittleEndian.PutUint32(b[24:28], crc)
	return dst
}

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	typ      byte
	valueLen int // payload length: the value, or for type 2 key, headers and value
	offset   uint64
	unixNano int64
	crc      uint32
}

func (h frameHeader) size() int64 { return frameSize(h.valueLen) }

// errFrameShort means the bytes end inside a frame (a torn write at the tail).
var errFrameShort = errors.New("frame extends past the end of the data")

// isFrameType reports whether b starts a record frame.
func isFrameType(b byte) bool { return b == frameTypeRecord || b == frameTypeKeyed }

// parseFrameHeader checks the fixed part of a frame without trusting it:
// the length is compared with maxValue before anyone allocates for it.
func parseFrameHeader(b []byte, maxValue int) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, errFrameShort
	}
	if !isFrameType(b[0]) {
		if b[0] == 0 {
			return frameHeader{}, errors.New("zero frame type (unwritten space)")
		}
		return frameHeader{}, fmt.Errorf("unknown frame type %d", b[0])
	}
	if b[1]|b[2]|b[3] != 0 {
		return frameHeader{}, errors.New("reserved frame bytes not zero")
	}
	n := binary.LittleEndian.Uint32(b[4:8])
	if uint64(n) > uint64(maxValue) {
		return frameHeader{}, fmt.Errorf("record length %d exceeds the limit %d", n, maxValue)
	}
	return frameHeader{
		typ:      b[0],
		valueLen: int(n),
		offset:   binary.LittleEndian.Uint64(b[8:16]),
		unixNano: int64(binary.LittleEndian.Uint64(b[16:24])),
		crc:      binary.LittleEndian.Uint32(b[24:28]),
	}, nil
}

// decodeFrame decodes the frame at the start of b, which must be the record
// with offset want. The returned payload aliases b.
func decodeFrame(b []byte, want uint64, maxValue int) (frameHeader, []byte, error) {
	h, err := parseFrameHeader(b, maxValue)
	if err != nil {
		return h, nil, err
	}
	if h.offset != want {
		return h, nil, fmt.Errorf("frame holds offset %d, want %d", h.offset, want)
	}
	if int64(len(b)) < h.size() {
		return h, nil, errFrameShort
	}
	payload := b[frameHeaderSize : frameHeaderSize+h.valueLen]
	if crc := crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, payload); crc != h.crc {
		return h, nil, fmt.Errorf("crc mismatch: stored %08x, computed %08x", h.crc, crc)
	}
	return h, payload, nil
}

// decodeRecord fills r's key, headers and value from a checked frame's
// payload; they all alias payload, header keys too (strings over its bytes:
// the caller never writes to a read buffer). Headers are carved from
// *slab, which a batch read shares between its records, so a record costs
// no allocation of its own.
func decodeRecord(h frameHeader, payload []byte, r *Record, slab *[]Header) error {
	if h.typ == frameTypeRecord {
		r.Value = payload[:len(payload):len(payload)]
		return nil
	}
	p := payload
	field := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil, fmt.Errorf("bad %s length", what)
		}
		f := p[k : k+int(n) : k+int(n)]
		p = p[k+int(n):]
		return f, nil
	}
	key, err := field("key")
	if err != nil {
		return err
	}
	count, k := binary.Uvarint(p)
	if k <= 0 || count > uint64(len(p)-k)/2 { // a header takes at least two length bytes
		return errors.New("bad header count")
	}
	p = p[k:]
	var headers []Header
	if count > 0 {
		if cap(*slab)-len(*slab) < int(count) {
			*slab = make([]Header, 0, max(int(count), 2*cap(*slab), 64))
		}
		start := len(*slab)
		for range count {
			hk, err := field("header key")
			if err != nil {
				return err
			}
			hv, err := field("header value")
			if err != nil {
				return err
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
func fileHeader(magic string, base uint64) []byte {
	b := make([]byte, fileHeaderSize)
	copy(b, magic)
	binary.LittleEndian.PutUint16(b[8:10], formatVersion)
	binary.LittleEndian.PutUint64(b[16:24], base)
	binary.LittleEndian.PutUint32(b[24:28], crc32.Checksum(b[:24], castagnoli))
	return b
}

// checkFileHeader validates a store or index header and its base offset.
func checkFileHeader(b []byte, magic string, base uint64) error {
	if len(b) < fileHeaderSize {
		return errFrameShort
	}
	if string(b[:8]) != magic {
		return fmt.Errorf("bad magic %q", b[:8])
	}
	if crc := crc32.Checksum(b[:24], castagnoli); crc != binary.LittleEndian.Uint32(b[24:28]) {
		return errors.New("header crc mismatch")
	}
	if v := binary.LittleEndian.Uint16(b[8:10]); v != formatVersion {
		return fmt.Errorf("unsupported format version %d", v)
	}
	if got := binary.LittleEndian.Uint64(b[16:24]); got != base {
		return fmt.Errorf("header base offset %d does not match file name %d", got, base)
	}
	return nil
}

// Index entries: uint32 store position of the frame, uint32 value length.
func putIndexEntry(b []byte, pos int64, valueLen int) {
	binary.LittleEndian.PutUint32(b[0:4], uint32(pos))
	binary.LittleEndian.PutUint32(b[4:8], uint32(valueLen))
}

func getIndexEntry(b []byte) (pos int64, valueLen int) {
	return int64(binary.LittleEndian.Uint32(b[0:4])), int(binary.LittleEndian.Uint32(b[4:8]))
}
