package logstore

import (
	"fmt"
	"io"
)

// Reader returns the whole retained log as bytes, for snapshots: the store
// files of every segment, oldest first, each from its 32-byte header up to
// the end of its last record visible when Reader was called. The stream is
// self-describing: a store header starts with the magic "PLOGSTOR" (first
// byte 'P'), a record frame never does (see layout.startsFrame), so a consumer reads a header,
// then frames until the next header or EOF, and can check every frame's CRC
// and offset exactly as recovery does. Segments deleted by retention while
// the stream is read make Read fail with ErrOutOfRange, and so does a
// TruncateFrom or Reset (which may cut or rewrite bytes the stream still
// has to deliver); closing the log makes it fail with ErrClosed.
func (l *Log) Reader() io.Reader {
	next, set, epoch := l.view()
	r := &snapshotReader{log: l, epoch: epoch}
	for _, s := range set.segs {
		if s.base > next || (s.base == next && len(r.parts) > 0) {
			break
		}
		r.parts = append(r.parts, snapshotPart{seg: s, end: s.end()})
	}
	return r
}

type snapshotPart struct {
	seg *segment
	end int64
}

// snapshotReader is not safe for concurrent use, like most io.Readers.
type snapshotReader struct {
	log   *Log
	epoch uint64 // Log.epoch when the stream began
	parts []snapshotPart
	pos   int64 // position inside parts[0]
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && r.pos >= r.parts[0].end {
		r.parts, r.pos = r.parts[1:], 0
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	part := r.parts[0]
	if int64(len(p)) > part.end-r.pos {
		p = p[:part.end-r.pos]
	}
	if !part.seg.acquire() {
		if r.log.closed.Load() {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("%w: segment %d was deleted while being read", ErrOutOfRange, part.seg.base)
	}
	n, err := part.seg.store.ReadAt(p, r.pos)
	part.seg.release()
	if r.log.epoch.Load() != r.epoch {
		return 0, fmt.Errorf("%w: the log was truncated or reset while being read", ErrOutOfRange)
	}
	r.pos += int64(n)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == io.EOF {
		err = corrupt(part.seg.storePath, r.pos, "store shorter than its visible records")
	}
	return n, err
}
