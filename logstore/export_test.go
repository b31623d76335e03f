package logstore

import "encoding/binary"

// WithFormatV1 returns cfg set to create new segments in format version 1,
// as the previous version of this package did, so that tests can make
// version 1 logs and check that this version reads and upgrades them.
func WithFormatV1(cfg Config) Config {
	cfg.format = 1
	return cfg
}

// WithTimeEvery returns cfg set to sample record times every n store
// bytes, so that small test segments get many time index entries.
func WithTimeEvery(cfg Config, n int64) Config {
	cfg.timeEvery = n
	return cfg
}

// DecodeTimeIndex checks a time index file's bytes as lookups do and
// returns its entries' offset deltas and store positions.
func DecodeTimeIndex(b []byte, base uint64) (deltas []uint32, pos []uint32, err error) {
	t, err := decodeTimeIndex(b, base)
	for i := range t.len() {
		e := t.at(i)
		deltas, pos = append(deltas, e.delta), append(pos, e.pos)
	}
	return deltas, pos, err
}

// FrameSize is the bytes a record of n payload bytes takes in a store of
// cfg's format.
func FrameSize(cfg Config, n int) int64 { return cfgLayout(cfg).frameSize(n) }

func cfgLayout(cfg Config) *layout {
	if cfg.format != 0 {
		return layoutFor(cfg.format)
	}
	return layoutNew
}

// StoreFrames walks the frames of a store file's bytes from its header on,
// in the file's format, and returns each valid frame's offset and the byte
// where it ends, up to the first that is not valid.
func StoreFrames(b []byte) (offsets []uint64, ends []int64) {
	if len(b) < fileHeaderSize {
		return nil, nil
	}
	base := binary.LittleEndian.Uint64(b[16:24])
	fl, err := checkFileHeader(b, storeMagic, base)
	if err != nil {
		return nil, nil
	}
	for pos := int64(fileHeaderSize); ; {
		h, _, err := fl.decodeFrame(b[pos:], base+uint64(len(offsets)), maxRecordLimit)
		if err != nil {
			return offsets, ends
		}
		pos += h.size()
		offsets, ends = append(offsets, h.offset), append(ends, pos)
	}
}
