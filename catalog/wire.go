package catalog

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// writer appends the primitives commands and snapshots are made of.
type writer struct{ b []byte }

func (w *writer) byte(c byte)      { w.b = append(w.b, c) }
func (w *writer) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *writer) int(v int)        { w.varint(int64(v)) }
func (w *writer) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *writer) count(n int)      { w.uvarint(uint64(n)) }
func (w *writer) strs(ss []string) {
	w.count(len(ss))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *writer) config(c Config) {
	w.uvarint(c.RetentionBytes)
	w.varint(int64(c.RetentionAge))
	w.uvarint(uint64(c.MaxRecordBytes))
}

// time keeps seconds and nanoseconds apart: UnixNano cannot hold the zero
// time (the default topic's Created).
func (w *writer) time(t time.Time) {
	w.varint(t.Unix())
	w.uvarint(uint64(t.Nanosecond()))
}

// reader reads what writer wrote. It accepts only the bytes writer would
// have produced (shortest varints, no unknown flag bits, nothing left
// over), so a decoded value encodes back to the same bytes; the first
// error sticks and every later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong varint")
		return 0
	}
	if n != uvarintLen(v) {
		r.fail("varint not in its shortest form")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// varint undoes binary.AppendVarint's zig-zag over a checked uvarint.
func (r *reader) varint() int64 {
	u := r.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (r *reader) int() int {
	v := r.varint()
	if int64(int(v)) != v {
		r.fail("integer %d out of range", v)
		return 0
	}
	return int(v)
}

// count reads a number of elements that follow, each at least one byte,
// so garbage cannot make the decoder allocate more than the input's size.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("count %d exceeds the %d bytes left", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("string of %d bytes, %d left", n, len(r.b))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) strs() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.str()
	}
	return ss
}

func (r *reader) config() Config {
	c := Config{RetentionBytes: r.uvarint(), RetentionAge: time.Duration(r.varint())}
	m := r.uvarint()
	if m > math.MaxUint32 {
		r.fail("max record bytes %d out of range", m)
	}
	c.MaxRecordBytes = uint32(m)
	return c
}

func (r *reader) time() time.Time {
	s, ns := r.varint(), r.uvarint()
	if ns >= uint64(time.Second) {
		r.fail("%d nanoseconds", ns)
		return time.Time{}
	}
	t := time.Unix(s, int64(ns)).UTC()
	if t.Unix() != s { // beyond what time.Time holds
		r.fail("time of %d seconds out of range", s)
		return time.Time{}
	}
	return t
}

// end fails unless every byte was read.
func (r *reader) end() error {
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}
