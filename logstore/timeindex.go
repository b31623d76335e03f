package logstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proglog/proglog/internal/atomicfile"
)

// The time index of a segment; doc.go ("Time index") has the file format.
const (
	timeIndexMagic   = "PLOGTIME"
	timeIndexVersion = 1
	// timeIndexEvery is the store bytes between samples: a 64 MiB segment
	// gets about 2,000 entries (32 KiB of file), and a lookup walks at most
	// this many bytes of frames, read with one pread.
	timeIndexEvery = 32 << 10
	timeEntrySize  = 16
	// timeWalkMax bounds the one read of a lookup's walk (a sample is
	// followed by up to timeIndexEvery bytes plus one frame, which may be
	// large); past it the walk hands over to the probe search.
	timeWalkMax = 256 << 10
)

// timeEntry says that the record at base+delta has time unixNano and its
// frame starts at store byte pos.
type timeEntry struct {
	unixNano int64
	delta    uint32
	pos      uint32
}

// timeSamples is time index entries back to back, as in the file: a
// lookup reads the ones it needs in place rather than decode them all.
type timeSamples []byte

func (t timeSamples) len() int { return len(t) / timeEntrySize }

func (t timeSamples) at(i int) timeEntry {
	e := t[i*timeEntrySize : (i+1)*timeEntrySize]
	return timeEntry{
		unixNano: int64(binary.LittleEndian.Uint64(e)),
		delta:    binary.LittleEndian.Uint32(e[8:]),
		pos:      binary.LittleEndian.Uint32(e[12:]),
	}
}

// timeIndex is a segment's samples as published to readers: the active
// segment's in memory, a sealed one's in a mapping of its file (mapped,
// unmapped when the segment is closed), or none (no usable file).
type timeIndex struct {
	samples timeSamples
	mapped  []byte
}

// appendSample adds record delta (frame at pos, time t) to t if it is the
// first or starts at least every bytes after the last sample.
// Positions alone decide, so the writer, a recovery scan and Restore sample
// a store alike.
func appendSample(t timeSamples, every int64, delta uint64, pos, unixNano int64) (timeSamples, bool) {
	if n := t.len(); n > 0 && pos < int64(t.at(n-1).pos)+every {
		return t, false
	}
	t = binary.LittleEndian.AppendUint64(t, uint64(unixNano))
	t = binary.LittleEndian.AppendUint32(t, uint32(delta))
	return binary.LittleEndian.AppendUint32(t, uint32(pos)), true
}

func timeIndexPath(storePath string) string {
	return strings.TrimSuffix(storePath, ".store") + ".timeindex"
}

// removeTimeIndex removes the time index of the store at storePath, if any.
func removeTimeIndex(storePath string) error {
	if err := os.Remove(timeIndexPath(storePath)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// encodeTimeIndex is the file for the samples of the segment based at base.
func encodeTimeIndex(base uint64, t timeSamples) []byte {
	b := make([]byte, 0, fileHeaderSize+len(t)+4)
	b = append(b, fileHeader(timeIndexMagic, base, timeIndexVersion)...)
	b = append(b, t...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(t, castagnoli))
}

// decodeTimeIndex checks a time index file of the segment based at base:
// header, length, CRC, and entries in order (offsets and positions rising,
// times not falling), and returns its samples. Entries pointing past the
// segment are the caller's check.
func decodeTimeIndex(b []byte, base uint64) (timeSamples, error) {
	if len(b) < fileHeaderSize+4 || (len(b)-fileHeaderSize-4)%timeEntrySize != 0 {
		return nil, fmt.Errorf("length %d is not a header, whole entries and a CRC", len(b))
	}
	if !bytes.Equal(b[:fileHeaderSize], fileHeader(timeIndexMagic, base, timeIndexVersion)) {
		return nil, errors.New("bad header")
	}
	t, sum := timeSamples(b[fileHeaderSize:len(b)-4]), b[len(b)-4:]
	if crc32.Checksum(t, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, errors.New("crc mismatch")
	}
	var prev timeEntry
	for i := range t.len() {
		e := t.at(i)
		if e.pos < fileHeaderSize || (i > 0 && (e.delta <= prev.delta || e.pos <= prev.pos || e.unixNano < prev.unixNano)) {
			return nil, fmt.Errorf("entry %d out of order", i)
		}
		prev = e
	}
	return t, nil
}

// writeTimeIndex writes s's samples to its time index file: a temporary
// file, fsynced with sync, renamed over (the caller fsyncs the directory).
func writeTimeIndex(s *segment, sync bool) error {
	return atomicfile.Write(timeIndexPath(s.storePath), encodeTimeIndex(s.base, s.times), 0o644, sync)
}

// mapTimeIndex maps a sealed segment's time index read-only and checks
// it. Any fault (missing, short, damaged, not this store's) is an error;
// callers then search without it. The file is never written in place
// (written whole and renamed, or removed), so the mapping cannot shrink
// under a reader.
func mapTimeIndex(s *segment) (_ timeSamples, mapped []byte, err error) {
	f, err := os.Open(timeIndexPath(s.storePath))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	size, err := fileSize(f)
	if err != nil {
		return nil, nil, err
	}
	count, end := s.visible()
	if size < fileHeaderSize+4 || size > fileHeaderSize+4+timeEntrySize*int64(count) {
		return nil, nil, fmt.Errorf("%d bytes, not a time index of a store of %d", size, end)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			unix.Munmap(m) // not mapped: a failed return has set it to nil
		}
	}()
	mapped = m
	t, err := decodeTimeIndex(mapped, s.base)
	if err != nil {
		return nil, nil, err
	}
	if n := t.len(); n > 0 && (uint64(t.at(n-1).delta) >= count || int64(t.at(n-1).pos) >= end) {
		return nil, nil, fmt.Errorf("entries past the segment's %d records", count)
	}
	return t, mapped, nil
}

// sampleTime records the time of record i (frame at pos) if it is due a
// sample, and publishes the samples. Caller holds flushMu.
func (s *segment) sampleTime(every int64, i uint64, pos, unixNano int64) {
	var added bool
	if s.times, added = appendSample(s.times, every, i, pos, unixNano); added {
		s.tix.Store(&timeIndex{samples: s.times})
	}
}

// setTimes makes entries the samples of a new active segment. Caller
// holds flushMu or owns s.
func (s *segment) setTimes(t timeSamples) {
	s.times = t
	s.tix.Store(&timeIndex{samples: t})
}

// sealTimes writes the time index of a segment just sealed and drops the
// samples from memory. A failure only costs lookups in the segment their
// shortcut, so it is logged, not returned. Caller holds flushMu.
func (l *Log) sealTimes(s *segment) {
	if err := writeTimeIndex(s, l.cfg.Sync != SyncNever); err != nil {
		l.logger.Warn("logstore: cannot write a time index; lookups by time search the segment without it", "segment", s.base, "err", err)
	}
	// Only now: a reader that finds no samples in memory reads the file.
	s.tix.Store(nil)
	s.times = nil
}

// keptTimes returns old's samples of its first keep records, for the
// segment TruncateFrom makes of it (a copy: readers may still be in old's).
func keptTimes(old *segment, keep uint64) timeSamples {
	t := old.timeSamples()
	n := sort.Search(t.len(), func(i int) bool { return uint64(t.at(i).delta) >= keep })
	return append(timeSamples(nil), t[:n*timeEntrySize]...)
}

// timeSamples returns s's samples: the active segment's from memory, a
// sealed one's from its file, mapped on first use; nil if it has none. The
// caller holds a reference.
func (s *segment) timeSamples() timeSamples {
	if x := s.tix.Load(); x != nil {
		return x.samples
	}
	t, mapped, err := mapTimeIndex(s)
	if err != nil {
		t = nil // searched without
	}
	x := &timeIndex{samples: t, mapped: mapped}
	if !s.tix.CompareAndSwap(nil, x) {
		if mapped != nil {
			unix.Munmap(mapped) // another reader was first
		}
		x = s.tix.Load()
	}
	return x.samples
}

// unmapTimeIndex releases a sealed segment's time index mapping, if any.
// Caller is the segment's last user.
func (s *segment) unmapTimeIndex() error {
	if x := s.tix.Swap(nil); x != nil && x.mapped != nil {
		return unix.Munmap(x.mapped)
	}
	return nil
}

// OffsetForTime returns the offset of the first retained record whose time
// is at or after t, or the next offset if there is none. It relies on
// times not decreasing along the log: AppendRecords keeps the times it
// stamps monotonic, and the cluster keeps the leader's times monotonic
// across leader changes. Records with equal times are found from the first.
//
// The segment comes from the sealed segments' newest times, kept in
// memory; in it, the time index brackets the answer between two samples at
// most timeIndexEvery store bytes apart, and one read of the frames between
// them finds it. Without a usable time index it probes frames (searchTime).
func (l *Log) OffsetForTime(ctx context.Context, t time.Time) (uint64, error) {
	want := t.UnixNano()
	for {
		// A truncation or retention that runs meanwhile moves the bounds:
		// search again in what it left.
		if l.closed.Load() {
			return 0, ErrClosed
		}
		next, set, epoch := l.view()
		off, ok, err := l.findTime(ctx, set, next, want)
		if err != nil {
			return 0, err
		}
		if ok && l.epoch.Load() == epoch {
			return off, nil
		}
	}
}

// findTime finds the first offset below next whose time is at least want,
// or next; ok is false if a segment went away meanwhile.
func (l *Log) findTime(ctx context.Context, set *segmentSet, next uint64, want int64) (uint64, bool, error) {
	segs := set.segs
	// A sealed segment whose newest record is older than want holds no
	// answer, nor does any before it. The search below stops at such a
	// segment (an unknown newest time counts as new enough), so the answer
	// is at or after the one it returns. The active segment's newest is the
	// writer's: it is only ever the last candidate.
	i := sort.Search(len(segs)-1, func(i int) bool { return segs[i].newest >= want })
	for ; i < len(segs); i++ {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		s := segs[i]
		end := next
		if i+1 < len(segs) {
			end = min(end, segs[i+1].base)
		}
		if s.base >= end {
			break
		}
		off, ok, err := l.searchSegment(ctx, set, s, end, want)
		if err != nil || !ok || off < end {
			return off, ok, err
		}
	}
	return next, true, nil
}

// searchSegment finds the first offset of s below end whose time is at
// least want, or end.
func (l *Log) searchSegment(ctx context.Context, set *segmentSet, s *segment, end uint64, want int64) (uint64, bool, error) {
	if !s.acquire() {
		return 0, false, nil
	}
	defer s.release()
	n := end - s.base
	t := s.timeSamples()
	m := sort.Search(t.len(), func(i int) bool { return uint64(t.at(i).delta) >= n })
	if m == 0 {
		return l.searchTime(ctx, set, s.base, end, want)
	}
	// Samples lo (time < want) and hi (time >= want) bracket the answer to
	// (lo, hi]; without lo it may be the first record, without hi past the
	// last sample.
	j := sort.Search(m, func(i int) bool { return t.at(i).unixNano >= want })
	from, lo := timeEntry{pos: fileHeaderSize}, false
	if j > 0 {
		from, lo = t.at(j-1), true
	}
	stop, readTo, hi := n, s.end(), j < m
	if hi {
		e := t.at(j)
		stop = uint64(e.delta) + 1
		readTo = min(readTo, int64(e.pos)+int64(s.lay.headerSize))
	}
	at, found, whole, err := s.walkTimes(from, stop, readTo, lo, hi, want)
	switch {
	case err != nil:
		return 0, false, err
	case whole:
		// The samples do not match the frames (a stale or damaged file
		// that passed its checks): the probe search decides, and reports
		// real damage.
		return l.searchTime(ctx, set, s.base, end, want)
	case found:
		return at, true, nil
	}
	return l.searchTime(ctx, set, at, s.base+stop, want)
}

// walkBufs holds walkTimes's read buffers: allocating and zeroing one per
// lookup would cost as much as the read.
var walkBufs = sync.Pool{New: func() any { b := make([]byte, timeWalkMax); return &b }}

// walkTimes reads the frames from from's up to store byte readTo with one
// pread and walks them, up to record stop (exclusive), for the first whose
// time is at least want. found: it is at. Otherwise at is where the walk
// ran out of bytes (s.base+stop: every record below it is older). whole:
// the frames contradict the samples (lo: from's record is older than want;
// hi: the record before stop is not).
func (s *segment) walkTimes(from timeEntry, stop uint64, readTo int64, lo, hi bool, want int64) (at uint64, found, whole bool, err error) {
	start := int64(from.pos)
	bp := walkBufs.Get().(*[]byte)
	defer walkBufs.Put(bp)
	buf := (*bp)[:max(min(readTo, start+timeWalkMax)-start, 0)]
	n, err := s.store.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, false, fmt.Errorf("logstore: read %s at byte %d: %w", s.storePath, start, err)
	}
	buf = buf[:n]
	var p int64
	for i := uint64(from.delta); i < stop; i++ {
		off := s.base + i
		if p+int64(s.lay.headerSize) > int64(len(buf)) {
			return off, false, false, nil
		}
		h, err := s.lay.parseFrameHeader(buf[p:], maxRecordLimit)
		if err != nil || !s.lay.holds(h, off) {
			return 0, false, true, nil
		}
		if h.unixNano >= want {
			if lo && i == uint64(from.delta) {
				return 0, false, true, nil
			}
			return off, true, false, nil
		}
		p += h.size()
	}
	return s.base + stop, false, hi, nil
}

// searchTime finds the first offset in [lo, hi) whose time is at least
// want, or hi, by probing frames; ok is false if a segment went away
// meanwhile.
//
// The search interpolates (where t falls between the times at the ends of
// the range, which for a steady stream lands next to the answer), gallops
// from the guess to bracket the answer, and after three such rounds
// bisects, which bounds the worst case at O(log n) probes; on a steady
// stream a lookup takes a handful of probes, close together on disk,
// instead of the 27 of a binary search over 10 GiB of 100 B records.
func (l *Log) searchTime(ctx context.Context, set *segmentSet, lo, hi uint64, want int64) (uint64, bool, error) {
	if lo >= hi {
		return hi, true, nil
	}
	probe := func(off uint64) (int64, bool, error) {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		return l.timeAt(set, off)
	}
	tLo, ok, err := probe(lo)
	if err != nil || !ok || tLo >= want {
		return lo, ok, err
	}
	last := hi - 1
	tHi, ok, err := probe(last)
	if err != nil || !ok || tHi < want {
		return hi, ok, err
	}
	// time(lo) < want <= time(last): the answer is in (lo, last]. A few
	// rounds of interpolation, each followed by a gallop from the guess
	// toward the answer (steps 1, 2, 4, ... records) that brackets it
	// closely, then bisection.
	set1 := func(off uint64, at int64) {
		if at >= want {
			last, tHi = off, at
		} else {
			lo, tLo = off, at
		}
	}
	for round := 0; last-lo > 1; round++ {
		if round >= 3 || tHi <= tLo {
			mid := lo + (last-lo)/2
			at, ok, err := probe(mid)
			if err != nil || !ok {
				return 0, ok, err
			}
			set1(mid, at)
			continue
		}
		frac := float64(want-tLo) / float64(tHi-tLo)
		g := min(max(lo+1+uint64(frac*float64(last-lo-1)), lo+1), last-1)
		at, ok, err := probe(g)
		if err != nil || !ok {
			return 0, ok, err
		}
		set1(g, at)
		up := at < want // the answer is above g
		for d := uint64(1); last-lo > 1; d *= 2 {
			var p uint64
			if up {
				if p = g + d; p >= last {
					break
				}
			} else {
				if d >= g-lo {
					break
				}
				p = g - d
			}
			at, ok, err := probe(p)
			if err != nil || !ok {
				return 0, ok, err
			}
			set1(p, at)
			if (at >= want) == up {
				break // bracketed
			}
		}
	}
	return last, true, nil
}

// timeAt reads the time of the record at offset, which must be visible in
// set; ok is false if its segment was deleted meanwhile.
func (l *Log) timeAt(set *segmentSet, offset uint64) (int64, bool, error) {
	s := set.segs[set.holding(offset)]
	if !s.acquire() {
		return 0, false, nil
	}
	defer s.release()
	at, err := s.timeAt(offset)
	return at, err == nil, err
}
