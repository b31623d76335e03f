package service

import (
	"crypto/tls"
	"encoding/binary"
	"sync"
	"time"
)

// Coalescing limits: how long response headers wait for the frames after
// them, and the largest write worth copying to join them.
const (
	holdMax     = time.Millisecond
	coalesceMax = 4 << 10
)

// coalescer sits between the HTTP/2 server's buffered writer and the TLS
// connection, to save a syscall and a TLS record per response. x/net's
// server flushes whenever its write queue is empty, and a handler hands it
// one frame at a time, so a unary response went out as two writes (Connect:
// HEADERS, then DATA with END_STREAM) or three (gRPC: HEADERS, DATA,
// trailers). A write that ends with a HEADERS frame without END_STREAM
// (response headers, whose DATA follows from the same handler) is held and
// sent with the next write, or after holdMax if none comes. DATA is never
// held, so no response or stream message is delayed: only headers sent on
// their own, by at most holdMax. Measured in docs/benchmarks.md (issue 10).
type coalescer struct {
	conn *tls.Conn

	mu     sync.Mutex // guards the fields below
	held   []byte
	timer  *time.Timer
	err    error
	skip   int     // bytes of the current frame's payload still to come
	hdr    [9]byte // a frame header split across writes
	hdrLen int
}

func (c *coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	hold := c.endsWithHeaders(p)
	if len(c.held) == 0 && !hold {
		return c.conn.Write(p)
	}
	if !hold && len(p) > coalesceMax {
		c.timer.Stop()
		err := c.writeHeld()
		if err != nil {
			return 0, err
		}
		return c.conn.Write(p)
	}
	c.held = append(c.held, p...)
	if hold {
		if c.timer == nil {
			c.timer = time.AfterFunc(holdMax, c.flushHeld)
		} else {
			c.timer.Reset(holdMax)
		}
		return len(p), nil
	}
	c.timer.Stop()
	if err := c.writeHeld(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeHeld sends what is held; c.mu is held.
func (c *coalescer) writeHeld() error {
	if len(c.held) == 0 || c.err != nil {
		return c.err
	}
	_, c.err = c.conn.Write(c.held)
	c.held = c.held[:0]
	return c.err
}

// flushHeld runs when holdMax passed with headers held.
func (c *coalescer) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.writeHeld()
}

// endsWithHeaders follows the frames in p and reports whether p ends at
// the end of a HEADERS frame without END_STREAM.
func (c *coalescer) endsWithHeaders(p []byte) bool {
	last := false
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(p))
			c.skip -= k
			p = p[k:]
			continue
		}
		k := copy(c.hdr[c.hdrLen:], p)
		c.hdrLen += k
		p = p[k:]
		if c.hdrLen < len(c.hdr) {
			return false
		}
		c.hdrLen = 0
		h := c.hdr
		// No END_STREAM (0x1), END_HEADERS (0x4).
		last = h[3] == frameHeaders && h[4]&0x1 == 0 && h[4]&0x4 != 0
		c.skip = int(binary.BigEndian.Uint32(h[0:4]) >> 8)
	}
	return last && c.skip == 0 && c.hdrLen == 0
}
