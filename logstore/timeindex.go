package logstore

import (
	"context"
	"slices"
	"time"
)

// OffsetForTime returns the offset of the first retained record whose time
// is at or after t, or the next offset if there is none. It binary-searches
// the records' times, reading one frame header per probe (O(log n) reads
// of 28 bytes, no scan and no extra index on disk), which is right as long
// as times do not decrease along the log: AppendRecords keeps the times it
// stamps monotonic, and the cluster keeps the leader's times monotonic
// across leader changes. Records with equal times are found from the first.
func (l *Log) OffsetForTime(ctx context.Context, t time.Time) (uint64, error) {
	want := t.UnixNano()
	for {
		// A truncation or retention that runs meanwhile moves the bounds:
		// search again in what it left.
		if l.closed.Load() {
			return 0, ErrClosed
		}
		next, set, epoch := l.view()
		lo, hi := set.segs[0].base, next
		moved := false
		for lo < hi && !moved {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			mid := lo + (hi-lo)/2
			at, ok, err := l.timeAt(set, mid)
			if err != nil {
				return 0, err
			}
			switch {
			case !ok:
				moved = true // deleted meanwhile
			case at >= want:
				hi = mid
			default:
				lo = mid + 1
			}
		}
		if !moved && l.epoch.Load() == epoch {
			return lo, nil
		}
	}
}

// timeAt reads the time of the record at offset, which must be visible in
// set; ok is false if its segment was deleted meanwhile.
func (l *Log) timeAt(set *segmentSet, offset uint64) (int64, bool, error) {
	segs := set.segs
	i, found := slices.BinarySearchFunc(segs, offset, func(s *segment, o uint64) int {
		switch {
		case s.base < o:
			return -1
		case s.base > o:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	s := segs[i]
	if !s.acquire() {
		return 0, false, nil
	}
	defer s.release()
	at, err := s.timeAt(offset)
	return at, err == nil, err
}
