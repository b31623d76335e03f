package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	if l.closed.Load() {
		return dst, ErrClosed
	}
	maxRecords = max(maxRecords, 1)
	for range 3 {
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		next, set, epoch := l.view()
		segs := set.segs
		if offset < segs[0].base || offset >= next {
			return dst, &RangeError{Offset: offset, Lowest: segs[0].base, Next: next}
		}
		i := set.holding(offset)
		s := segs[i]
		limit := next
		if i+1 < len(segs) {
			limit = min(limit, segs[i+1].base)
		}
		if !s.acquire() {
			if l.closed.Load() {
				return dst, ErrClosed
			}
			continue // deleted meanwhile; the fresh set says what is left
		}
		out, err := s.readHeads(offset, maxRecords, prefix, dst, limit)
		s.release()
		if l.epoch.Load() != epoch {
			clear(out[len(dst):]) // cut or rewritten meanwhile: read again
			continue
		}
		return out, err
	}
	lowest, next := l.Bounds()
	return dst, &RangeError{Offset: offset, Lowest: lowest, Next: next}
}

// readHeads is ReadHeads within this segment, for records [offset, limit)
// (limit as for read). The caller holds a reference.
func (s *segment) readHeads(offset uint64, maxRecords, prefix int, dst []Head, limit uint64) ([]Head, error) {
	visCount, visEnd := s.visible()
	if offset < s.base || limit <= offset || limit-s.base > min(s.indexEntries(), visCount) {
		return dst, corrupt(s.indexPath, 0, "offsets [%d, %d) are not in this segment's index", offset, limit)
	}
	first := offset - s.base
	n := min(limit-offset, uint64(maxRecords))
	hs := int64(s.lay.headerSize)
	var (
		win   []byte // store bytes [winAt, winAt+len(win)) read whole
		winAt int64
		end   = s.entryPos(first) // where the next frame must start
	)
	if end < fileHeaderSize {
		return dst, corrupt(s.indexPath, s.entryByte(first), "entry for offset %d points at store byte %d", offset, end)
	}
	for k := range n {
		off := offset + k
		pos, size, vlen := s.extent(first+k, visCount, visEnd)
		if pos != end || size < s.lay.minFrame || size > s.lay.frameSize(maxRecordLimit) || pos+size > visEnd {
			return dst, corrupt(s.indexPath, s.entryByte(first+k),
				"entry for offset %d (store byte %d, %d bytes) does not follow the previous record ending at %d within %d store bytes", off, pos, size, end, visEnd)
		}
		end = pos + size
		if size < headBig {
			if pos < winAt || pos+size > winAt+int64(len(win)) {
				// Read this frame and the small ones after it, up to
				// headWindow bytes (at least this frame).
				stop := pos + size
				for j := first + k + 1; j < first+n; j++ {
					p, sz, _ := s.extent(j, visCount, visEnd)
					if p != stop || sz >= headBig || p+sz-pos > headWindow || p+sz > visEnd {
						break
					}
					stop = p + sz
				}
				var err error
				if win, err = s.readAt(pos, stop-pos); err != nil {
					return dst, err
				}
				winAt = pos
			}
			h, err := s.decodeHead(win[pos-winAt:pos-winAt+size], off, size, vlen, prefix, pos)
			if err != nil {
				return dst, err
			}
			dst = append(dst, h)
			continue
		}
		b, err := s.readAt(pos, min(size, hs+int64(prefix)))
		if err != nil {
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
			// A keyed record's value starts after its key and headers:
			// read it whole.
			if b, err = s.readAt(pos, size); err != nil {
				return dst, err
			}
			h, err := s.decodeHead(b, off, size, vlen, prefix, pos)
			if err != nil {
				return dst, err
			}
			dst = append(dst, h)
			continue
		}
		v := b[hs:]
		dst = append(dst, Head{Offset: off, ValueLen: fh.valueLen, Prefix: v[:min(len(v), fh.valueLen):min(len(v), fh.valueLen)]})
	}
	return dst, nil
}

// decodeHead checks the whole frame b (at store byte pos) and returns its
// head.
func (s *segment) decodeHead(b []byte, off uint64, size int64, vlen, prefix int, pos int64) (Head, error) {
	fh, payload, err := s.lay.decodeFrame(b, off, maxRecordLimit)
	if err == nil && (fh.size() != size || (vlen >= 0 && vlen != fh.valueLen)) {
		err = fmt.Errorf("a frame of %d bytes (length %d), the index says %d bytes", fh.size(), fh.valueLen, size)
	}
	var rec Record
	var slab []Header
	if err == nil {
		err = decodeRecord(fh, payload, &rec, &slab, 1)
	}
	if err != nil {
		ce := corrupt(s.storePath, pos, "record %d: %v", off, err).(*CorruptError)
		ce.Record, ce.HasRecord = off, true
		return Head{}, ce
	}
	p := min(prefix, len(rec.Value))
	return Head{Offset: off, ValueLen: len(rec.Value), Prefix: rec.Value[:p:p], Checked: true}, nil
}

// readAt reads n store bytes at pos.
func (s *segment) readAt(pos, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.store.ReadAt(b, pos); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, corrupt(s.storePath, pos, "index points past the end of the store: %v", err)
		}
		return nil, fmt.Errorf("logstore: read %s at byte %d: %w", s.storePath, pos, err)
	}
	return b, nil
}
