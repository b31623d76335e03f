package raftwal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/proglog/proglog/internal/bufpool"
)

// ErrCorrupt means a record of the WAL does not decode (its frame's CRC was
// right, so this is a bug or a format this version does not know).
var ErrCorrupt = errors.New("raftwal: corrupt record")

// Record kinds: the first byte of every record.
const (
	kindEntry          byte = 1 // one entry of a log
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
	kind  byte
	key   key
	index uint64 // the entry's index, or the index a truncation names
	value []byte // an entry's bytes (pointing into the record's); nil otherwise
}

// headerSize bounds the size of a record's header.
func headerSize(k key) int {
	return 1 + binary.MaxVarintLen64 + len(k.name) + 8 + binary.MaxVarintLen64
}

// appendRecord appends a record: kind, key, index, then (an entry) the
// entry's bytes, which run to the record's end.
func appendRecord(b []byte, kind byte, k key, index uint64, value []byte) []byte {
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(k.name)))
	b = append(b, k.name...)
	b = binary.LittleEndian.AppendUint64(b, k.inc)
	b = binary.AppendUvarint(b, index)
	return append(b, value...)
}

// encodeControl encodes a truncation record.
func encodeControl(kind byte, k key, index uint64) []byte {
	return appendRecord(make([]byte, 0, headerSize(k)), kind, k, index, nil)
}

// maxNameBytes bounds a log's name, so a damaged length cannot ask for
// gigabytes.
const maxNameBytes = 4096

// decode decodes a record; an entry's value points into b.
func decode(b []byte) (rec record, err error) {
	fail := func(what string) (record, error) {
		return record{}, fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	if len(b) == 0 {
		return fail("empty")
	}
	rec.kind, b = b[0], b[1:]
	if rec.kind < kindEntry || rec.kind > kindReset {
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
	if rec.kind != kindEntry {
		if len(b) != 0 {
			return fail("trailing bytes")
		}
		return rec, nil
	}
	if rec.index == ^uint64(0) {
		return fail("index past the last")
	}
	rec.value = b
	return rec, nil
}

// bufPool holds the buffers appends encode their records into (the WAL
// copies them before the append returns).
var bufPool = bufpool.Pool{Max: 8 << 20}
