package raftwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/proglog/proglog/internal/bufpool"
)

// ErrCorrupt means a record of the WAL does not decode (its frame's CRC was
// right, so this is a bug or a format this version does not know).
var ErrCorrupt = errors.New("raftwal: corrupt record")

// Record kinds: the first byte of every record. Records since the header
// checksum carry headerChecked added to the kind; earlier ones are read as
// they were.
const (
	kindEntry          byte = 1 // one entry of a log
	kindTruncateFrom   byte = 2 // a log drops its entries from an index on
	kindTruncateBefore byte = 3 // a log drops its entries below an index
	kindReset          byte = 4 // a log drops every entry and restarts at an index

	// headerChecked marks a record whose header (kind to index) is followed
	// by a CRC-32C of it, so that replay can trust a header without
	// reading (and CRC-checking) the whole entry after it.
	headerChecked byte = 4
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

// maxHeaderBytes bounds every record's header, its checksum included:
// what replay reads of a record whose frame it does not read whole.
const maxHeaderBytes = 1 + binary.MaxVarintLen64 + maxNameBytes + 8 + binary.MaxVarintLen64 + 4

// headerSize bounds the size of the header of a record of k.
func headerSize(k key) int { return maxHeaderBytes - maxNameBytes + len(k.name) }

// appendRecord appends a record: kind, key, index, the header's CRC-32C,
// then (an entry) the entry's bytes, which run to the record's end.
func appendRecord(b []byte, kind byte, k key, index uint64, value []byte) []byte {
	start := len(b)
	b = append(b, kind+headerChecked)
	b = binary.AppendUvarint(b, uint64(len(k.name)))
	b = append(b, k.name...)
	b = binary.LittleEndian.AppendUint64(b, k.inc)
	b = binary.AppendUvarint(b, index)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
	return append(b, value...)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeControl encodes a truncation record.
func encodeControl(kind byte, k key, index uint64) []byte {
	return appendRecord(make([]byte, 0, headerSize(k)), kind, k, index, nil)
}

// maxNameBytes bounds a log's name, so a damaged length cannot ask for
// gigabytes.
const maxNameBytes = 4096

// decode decodes a record; an entry's value points into b.
func decode(b []byte) (record, error) {
	rec, _, err := decodeHead(b, len(b))
	return rec, err
}

// decodeHead decodes a record of size bytes from its first bytes b (all
// of it, or at least maxHeaderBytes); an entry's value is what b holds of
// it. checked says the header carried its checksum and it matched.
func decodeHead(b []byte, size int) (rec record, checked bool, err error) {
	fail := func(what string) (record, bool, error) {
		return record{}, false, fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	whole := len(b) == size
	if len(b) == 0 {
		return fail("empty")
	}
	all := b
	rec.kind, b = b[0], b[1:]
	if rec.kind > headerChecked {
		rec.kind -= headerChecked
		checked = true
	}
	if rec.kind < kindEntry || rec.kind > kindReset {
		return fail(fmt.Sprintf("unknown kind %d", all[0]))
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
	if checked {
		if len(b) < 4 {
			return fail("header checksum")
		}
		if want, got := binary.LittleEndian.Uint32(b), crc32.Checksum(all[:len(all)-len(b)], castagnoli); want != got {
			return fail(fmt.Sprintf("header checksum %08x, computed %08x", want, got))
		}
		b = b[4:]
	}
	if rec.kind != kindEntry {
		if len(b) != 0 || !whole {
			return fail("trailing bytes")
		}
		return rec, checked, nil
	}
	if rec.index == ^uint64(0) {
		return fail("index past the last")
	}
	rec.value = b
	return rec, checked, nil
}

// bufPool holds the buffers appends encode their records into (the WAL
// copies them before the append returns).
var bufPool = bufpool.Pool{Max: 8 << 20}
