package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk layout constants; doc.go describes the format byte by byte.
const (
	formatVersion   = 1
	fileHeaderSize  = 32
	frameHeaderSize = 28
	frameAlign      = 8
	indexEntrySize  = 8
	frameTypeRecord = 1
	minFrameSize    = (frameHeaderSize + frameAlign - 1) &^ (frameAlign - 1)
)

const (
	storeMagic = "PLOGSTOR"
	indexMagic = "PLOGINDX"
)

// castagnoli is the CRC32C table; never modified after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize is the bytes a record with a value of n bytes takes in a store,
// padding included.
func frameSize(n int) int64 {
	return (frameHeaderSize + int64(n) + frameAlign - 1) &^ (frameAlign - 1)
}

// appendFrame encodes one record frame onto dst.
func appendFrame(dst []byte, offset uint64, unixNano int64, value []byte) []byte {
	start := len(dst)
	n := int(frameSize(len(value)))
	if cap(dst)-start < n {
		grown := make([]byte, start, 2*cap(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	b := dst[start:]
	b[0] = frameTypeRecord
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(value)))
	binary.LittleEndian.PutUint64(b[8:16], offset)
	binary.LittleEndian.PutUint64(b[16:24], uint64(unixNano))
	copy(b[frameHeaderSize:], value)
	clear(b[frameHeaderSize+len(value):])
	crc := crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, value)
	binary.LittleEndian.PutUint32(b[24:28], crc)
	return dst
}

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	valueLen int
	offset   uint64
	unixNano int64
	crc      uint32
}

func (h frameHeader) size() int64 { return frameSize(h.valueLen) }

// errFrameShort means the bytes end inside a frame (a torn write at the tail).
var errFrameShort = errors.New("frame extends past the end of the data")

// parseFrameHeader checks the fixed part of a frame without trusting it:
// the length is compared with maxValue before anyone allocates for it.
func parseFrameHeader(b []byte, maxValue int) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, errFrameShort
	}
	if b[0] != frameTypeRecord {
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
		valueLen: int(n),
		offset:   binary.LittleEndian.Uint64(b[8:16]),
		unixNano: int64(binary.LittleEndian.Uint64(b[16:24])),
		crc:      binary.LittleEndian.Uint32(b[24:28]),
	}, nil
}

// decodeFrame decodes the frame at the start of b, which must be the record
// with offset want. The returned value aliases b.
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
	value := b[frameHeaderSize : frameHeaderSize+h.valueLen]
	if crc := crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, value); crc != h.crc {
		return h, nil, fmt.Errorf("crc mismatch: stored %08x, computed %08x", h.crc, crc)
	}
	return h, value, nil
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
