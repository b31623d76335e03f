package catalog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// snapshotV1 is the first byte of a snapshot in this format.
const snapshotV1 byte = 0x01

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeView writes the view's state in name order, so equal states are
// equal bytes, and seals it with a CRC32C.
func encodeView(v *View) []byte {
	w := writer{b: make([]byte, 0, 256)}
	w.byte(snapshotV1)
	w.uvarint(v.index)
	w.count(len(v.sorted))
	for _, t := range v.sorted {
		w.str(t.Name)
		w.uvarint(t.ID)
		w.int(t.ReplicationFactor)
		w.config(t.Config)
		w.time(t.Created)
		w.count(len(t.Partitions))
		for _, p := range t.Partitions {
			var flags byte
			if p.System {
				flags = 1
			}
			w.byte(flags)
			w.strs(p.Replicas)
			w.strs(p.Initial)
		}
	}
	return binary.LittleEndian.AppendUint32(w.b, crc32.Checksum(w.b, castagnoli))
}

// decodeView reads what encodeView wrote and refuses, wrapping
// ErrInvalid, any bytes that fail the checksum or describe a state Apply
// could not have built.
func decodeView(b []byte) (*View, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("%w: snapshot of %d bytes", ErrInvalid, len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: snapshot checksum mismatch", ErrInvalid)
	}
	return decodeBody(body)
}

func decodeBody(body []byte) (*View, error) {
	r := reader{b: body}
	if ver := r.byte(); ver != snapshotV1 {
		return nil, fmt.Errorf("%w: snapshot version 0x%02x", ErrInvalid, ver)
	}
	index := r.uvarint()
	topics := make(map[string]*Topic)
	sorted := make([]*Topic, r.count())
	for i := range sorted {
		t := &Topic{
			Name:              r.str(),
			ID:                r.uvarint(),
			ReplicationFactor: r.int(),
			Config:            r.config(),
			Created:           r.time(),
		}
		t.Partitions = make([]Partition, r.count())
		for j := range t.Partitions {
			p := &t.Partitions[j]
			p.Index = j
			switch flags := r.byte(); flags {
			case 0, 1:
				p.System = flags == 1
			default:
				r.fail("partition flags 0x%02x", flags)
			}
			p.Replicas = r.strs()
			p.Initial = r.strs()
		}
		if r.err != nil {
			break
		}
		if i > 0 && sorted[i-1].Name >= t.Name {
			r.fail("topic %q after %q", t.Name, sorted[i-1].Name)
			break
		}
		if err := checkTopic(t, index); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		topics[t.Name] = t
		sorted[i] = t
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if _, ok := topics[DefaultTopic]; !ok {
		return nil, fmt.Errorf("%w: snapshot without the default topic", ErrInvalid)
	}
	if err := uniqueIDs(sorted); err != nil {
		return nil, err
	}
	return newView(index, topics, sorted), nil
}

// uniqueIDs refuses two topics with one ID: each is its creating index.
func uniqueIDs(topics []*Topic) error {
	seen := make(map[uint64]string, len(topics))
	for _, t := range topics {
		if other, ok := seen[t.ID]; ok {
			return fmt.Errorf("%w: snapshot: topics %q and %q share ID %d", ErrInvalid, other, t.Name, t.ID)
		}
		seen[t.ID] = t.Name
	}
	return nil
}
