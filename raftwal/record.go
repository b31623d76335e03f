package raftwal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt means a record of the WAL does not decode (its frame's CRC was
// right, so this is a bug or a format this version does not know).
var ErrCorrupt = errors.New("raftwal: corrupt record")

// Record kinds: the first byte of every record.
const (
	kindEntries        byte = 1 // a log's entries from an index on
	kindTruncateFrom   byte = 2 // a log drops its entries from an index on
	kindTruncateBefore byte = 3 // a log drops its entries below an index
	kindReset          byte = 4 // a log drops every entry and restarts at an index
)

// key names one log: the directory it was opened for, relative to the
// WAL's root, and that directory's incarnation (see Incarnation).
type key struct {
	name string
	inc  uint64
}

// record is one decoded record of the WAL.
type record struct {
	kind   byte
	key    key
	index  uint64   // entries: the first entry's index; the others: the index named
	values [][]byte // entries only; they point into the record's bytes
}

// appendHeader appends a record's kind, key and index.
func appendHeader(b []byte, kind byte, k key, index uint64) []byte {
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(k.name)))
	b = append(b, k.name...)
	b = binary.LittleEndian.AppendUint64(b, k.inc)
	return binary.AppendUvarint(b, index)
}

// encodeEntries encodes an entries record into one buffer.
func encodeEntries(k key, first uint64, values [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64 + len(k.name) + 8 + 2*binary.MaxVarintLen64
	for _, v := range values {
		n += binary.MaxVarintLen64 + len(v)
	}
	b := appendHeader(make([]byte, 0, n), kindEntries, k, first)
	b = binary.AppendUvarint(b, uint64(len(values)))
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// encodeControl encodes a record of one of the other kinds.
func encodeControl(kind byte, k key, index uint64) []byte {
	return appendHeader(make([]byte, 0, 1+binary.MaxVarintLen64+len(k.name)+8+binary.MaxVarintLen64), kind, k, index)
}

// maxNameBytes bounds a log's name, so a damaged length cannot ask for
// gigabytes.
const maxNameBytes = 4096

// decode decodes a record; values point into b. With entries false the
// values of an entries record are counted but not collected (the count is
// in len(values) only when collected; use the second result).
func decode(b []byte, entries bool) (rec record, count uint64, err error) {
	fail := func(what string) (record, uint64, error) {
		return record{}, 0, fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	if len(b) == 0 {
		return fail("empty")
	}
	rec.kind, b = b[0], b[1:]
	if rec.kind < kindEntries || rec.kind > kindReset {
		return fail(fmt.Sprintf("unknown kind %d", rec.kind))
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n > maxNameBytes || uint64(len(b)-w) < n+8 {
		return fail("name")
	}
	b = b[w:]
	rec.key.name, b = string(b[:n]), b[n:]
	rec.key.inc, b = binary.LittleEndian.Uint64(b), b[8:]
	if rec.index, w = binary.Uvarint(b); w <= 0 {
		return fail("index")
	}
	b = b[w:]
	if rec.kind != kindEntries {
		if len(b) != 0 {
			return fail("trailing bytes")
		}
		return rec, 0, nil
	}
	if count, w = binary.Uvarint(b); w <= 0 || count == 0 || count > uint64(len(b)) {
		return fail("entry count")
	}
	b = b[w:]
	if entries {
		rec.values = make([][]byte, 0, count)
	}
	for i := uint64(0); i < count; i++ {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return fail(fmt.Sprintf("entry %d of %d", i, count))
		}
		if entries {
			rec.values = append(rec.values, b[w:w+int(n):w+int(n)])
		}
		b = b[w+int(n):]
	}
	if len(b) != 0 {
		return fail("trailing bytes")
	}
	if rec.index+count < rec.index {
		return fail("index overflows")
	}
	return rec, count, nil
}
