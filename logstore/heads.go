package logstore

import (
	"context"
	"fmt"
)

// Head is the start of a record: its offset, its value's length and the
// first bytes of its value.
type Head struct {
	Offset   uint64
	ValueLen int
	// Prefix is the value's first min(prefix, ValueLen) bytes.
	Prefix []byte
	// Checked says the whole frame was read and its checksum matched. A
	// large frame's value is not read, so its checksum cannot be checked:
	// only its fixed part is (type, length, offset), as for a lookup by
	// time. Reading the record checks it.
	Checked bool
}

// headBig is the frame size from which ReadHeads reads only a frame's
// fixed part and the start of its value; smaller frames are read whole,
// many in one read, and checked.
const headBig = 32 << 10

// headWindow bounds one read of consecutive small frames.
const headWindow = 256 << 10

// ReadHeads appends the heads of records from offset on to dst: at most
// maxRecords (at least one), each with up to prefix bytes of its value,
// without reading the values of large records (for a reader that needs
// only what a value starts with, such as a replay of records whose
// payload starts with a header of its own). Errors are those of ReadBatch.
func (l *Log) ReadHeads(ctx context.Context, offset uint64, maxRecords, prefix int, dst []Head) ([]Head, error) {
	return readSegment(l, ctx, offset, dst, func(s *segment, limit uint64, dst []Head) ([]Head, error) {
		return s.readHeads(offset, max(maxRecords, 1), prefix, dst, limit)
	})
}

// readHeads is ReadHeads within this segment, for records [offset, limit)
// (limit as for read). Runs of small frames, and keyed ones, go through
// read: whole and checked. The caller holds a reference.
func (s *segment) readHeads(offset uint64, maxRecords, prefix int, dst []Head, limit uint64) ([]Head, error) {
	visCount, visEnd := s.visible()
	if offset < s.base || limit <= offset || limit-s.base > min(s.indexEntries(), visCount) {
		return dst, corrupt(s.indexPath, 0, "offsets [%d, %d) are not in this segment's index", offset, limit)
	}
	first := offset - s.base
	n := min(limit-offset, uint64(maxRecords))
	var recs []Record
	whole := func(off uint64, count uint64) error {
		var err error
		if recs, err = s.read(off, int(count), 0, recs[:0], limit, maxRecordLimit, nil); err != nil {
			return err
		}
		for _, r := range recs {
			p := min(prefix, len(r.Value))
			dst = append(dst, Head{Offset: r.Offset, ValueLen: len(r.Value), Prefix: r.Value[:p:p], Checked: true})
		}
		return nil
	}
	end := s.entryPos(first) // where the next frame must start
	for k := uint64(0); k < n; {
		off := offset + k
		pos, size, vlen := s.extent(first+k, visCount, visEnd)
		if size < headBig {
			// This frame and the small ones after it, up to headWindow
			// bytes (read checks that they follow each other).
			run := uint64(1)
			end = pos + size
			for ; k+run < n; run++ {
				p, sz, _ := s.extent(first+k+run, visCount, visEnd)
				if sz >= headBig || p+sz-pos > headWindow {
					break
				}
				end = p + sz
			}
			if err := whole(off, run); err != nil {
				return dst, err
			}
			k += run
			continue
		}
		if pos != end || pos < fileHeaderSize || size > s.lay.frameSize(maxRecordLimit) || pos+size > visEnd {
			return dst, corrupt(s.indexPath, s.entryByte(first+k),
				"entry for offset %d (store byte %d, %d bytes) does not follow the previous record ending at %d within %d store bytes", off, pos, size, end, visEnd)
		}
		end = pos + size
		b := make([]byte, min(size, int64(s.lay.headerSize+prefix)))
		if err := s.readAt(b, pos); err != nil {
			return dst, err
		}
		fh, err := s.lay.parseFrameHeader(b, maxRecordLimit)
		if err == nil && !s.lay.holds(fh, off) {
			err = fmt.Errorf("frame holds offset %d, want %d", fh.offset, off)
		}
		if err == nil && (fh.size() != size || (vlen >= 0 && vlen != fh.valueLen)) {
			err = fmt.Errorf("a frame of %d bytes (length %d), the index says %d bytes", fh.size(), fh.valueLen, size)
		}
		if err != nil {
			return dst, corrupt(s.storePath, pos, "record %d: %v", off, err)
		}
		if fh.typ != frameTypeRecord {
			// A keyed record's value starts after its key and headers.
			if err := whole(off, 1); err != nil {
				return dst, err
			}
		} else {
			v := b[s.lay.headerSize:]
			v = v[:min(len(v), fh.valueLen):min(len(v), fh.valueLen)]
			dst = append(dst, Head{Offset: off, ValueLen: fh.valueLen, Prefix: v})
		}
		k++
	}
	return dst, nil
}
