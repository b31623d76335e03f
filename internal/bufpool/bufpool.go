// Package bufpool lends the byte buffers that encoders fill and a writer
// copies before it returns: a buffer per write would be garbage at the
// rate entries are written, which under a memory limit is the collector's
// work.
package bufpool

import "sync"

// Pool lends buffers; it keeps for reuse only those of at most Max bytes,
// so one huge write does not pin its buffer.
type Pool struct {
	Max  int
	pool sync.Pool // of *[]byte
}

// Get returns an empty buffer with room for size bytes.
func (p *Pool) Get(size int) *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok && cap(*b) >= size {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, size)
	return &b
}

// Put returns a buffer that nothing refers to any more.
func (p *Pool) Put(b *[]byte) {
	if cap(*b) <= p.Max {
		p.pool.Put(b)
	}
}
