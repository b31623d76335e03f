package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A raft command entry holds one batch of records:
//
//	0   1  type: 1 = append batch
//	1   -  uvarint count, then count × (uvarint length, value bytes)
//
// Nothing follows the last value.
const entryAppend = 1

var errBadEntry = errors.New("cluster: malformed raft entry")

func encodeBatch(values [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, v := range values {
		n += binary.MaxVarintLen64 + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, entryAppend)
	b = binary.AppendUvarint(b, uint64(len(values)))
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// decodeBatch parses an entry without trusting it; the values alias b.
func decodeBatch(b []byte) ([][]byte, error) {
	if len(b) == 0 || b[0] != entryAppend {
		return nil, fmt.Errorf("%w: unknown type", errBadEntry)
	}
	b = b[1:]
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad count", errBadEntry)
	}
	b = b[k:]
	if count == 0 || count > uint64(len(b)) { // every value takes at least its length byte
		return nil, fmt.Errorf("%w: count %d for %d bytes", errBadEntry, count, len(b))
	}
	values := make([][]byte, 0, count)
	for i := uint64(0); i < count; i++ {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, fmt.Errorf("%w: bad length of value %d", errBadEntry, i)
		}
		b = b[k:]
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: value %d claims %d bytes, %d left", errBadEntry, i, n, len(b))
		}
		values = append(values, b[:n:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadEntry, len(b))
	}
	return values, nil
}
