// Package bufpool lends the byte buffers that encoders fill and a writer
// copies before it returns: a buffer per write would be garbage at the
// rate entries are written, which under a memory limit is the collector's
// work.
package bufpool

import (
	"math/bits"
	"sync"
)

// Pool lends buffers; it keeps for reuse only those of at most Max bytes,
// so one huge write does not pin its buffer.
type Pool struct {
	Max  int
	pool sync.Pool // of *[]byte
}

// Get returns an empty buffer with room for size bytes. A new buffer is
// rounded up to a power of two (up to Max): writes vary in size, and a
// buffer made to measure would be too small for the next larger one, so
// each such write would drop it and make another.
func (p *Pool) Get(size int) *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok && cap(*b) >= size {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, roundUp(size, p.Max))
	return &b
}

// roundUp is the power of two at or above size, or size itself if that
// is above limit.
func roundUp(size, limit int) int {
	n := 1 << bits.Len(uint(max(size, 1)-1))
	if n > limit {
		return max(size, limit)
	}
	return n
}

// Put returns a buffer that nothing refers to any more.
func (p *Pool) Put(b *[]byte) {
	if cap(*b) <= p.Max {
		p.pool.Put(b)
	}
}
