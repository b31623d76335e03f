package raftmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// lostError fails the requests of a connection that failed, and any
// request sent on it afterwards.
type lostError struct {
	addr raft.ServerAddress
	err  error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("raftmux: connection to %s: %v", e.addr, e.err)
}
func (e *lostError) Unwrap() error { return e.err }

// clientConn is a connection this node dialed: its groups' requests go
// out on it and the answers come back.
type clientConn struct {
	m    *Mux
	peer *peer
	conn net.Conn
	w    *writer

	nextID   atomic.Uint64
	dialed   int64        // UnixNano of the dial
	lastRead atomic.Int64 // UnixNano of the latest answer read (dialed: none yet)

	mu    sync.Mutex // guards calls, err
	calls map[uint64]*call
	err   error // set when the connection failed: no new calls
}

// call is a request waiting for its answer.
type call struct {
	id   uint64
	resp any           // decoded into by the reader, which then closes done
	done chan struct{} // closed once err or resp is set
	err  error
}

// startClient runs the reader and writer of a dialed connection; nil if
// the Mux is closed (nc is closed then).
func (m *Mux) startClient(p *peer, nc net.Conn) *clientConn {
	c := &clientConn{m: m, peer: p, conn: nc, w: newWriter(nc, m.cfg), calls: map[uint64]*call{}}
	c.dialed = time.Now().UnixNano()
	c.lastRead.Store(c.dialed)
	if !m.track(nc) {
		nc.Close()
		return nil
	}
	if !m.goTracked(c.w.run) {
		m.untrack(nc)
		nc.Close()
		return nil
	}
	if !m.goTracked(c.read) {
		c.w.fail(ErrClosed)
		m.untrack(nc)
		return nil
	}
	return c
}

// start registers a new call, or says why the connection takes none.
func (c *clientConn) start(resp any) (*call, error) {
	k := &call{id: c.nextID.Add(1), resp: resp, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.calls[k.id] = k
	return k, nil
}

// request registers a call and queues its request frame, f with the
// call's id; canceled is the error if cancel closes first. A frame the
// writer refused because it failed with the connection is a lostError.
func (c *clientConn) request(f frame, resp any, cancel <-chan struct{}, canceled error) (*call, error) {
	k, err := c.start(resp)
	if err != nil {
		return nil, err
	}
	f.id = k.id
	if err := c.w.send(f, cancel); err != nil {
		c.forget(k)
		switch {
		case err == errCanceled:
			return nil, canceled
		case errors.Is(err, ErrTimeout): // the send queue stayed full
			return nil, err
		}
		return nil, &lostError{addr: c.peer.addr, err: err}
	}
	return k, nil
}

// failed is why c failed, or nil while it works.
func (c *clientConn) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// forget removes k if the reader has not taken it; true if removed (then
// nobody else touches k's resp).
func (c *clientConn) forget(k *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.calls[k.id]; ok {
		delete(c.calls, k.id)
		return true
	}
	return false
}

// take removes and returns the call with id, or nil.
func (c *clientConn) take(id uint64) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.calls[id]
	delete(c.calls, id)
	return k
}

// fail ends the connection: every call in flight fails with err, and the
// next request dials again. It sets c's error and drops c as its peer's
// connection under the peer's lock, so Mux.conn, which hands out the
// peer's connection under that lock, never hands out one that has failed.
func (c *clientConn) fail(err error) {
	p := c.peer
	p.mu.Lock() // before c.mu, as in peer.dialed
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		p.mu.Unlock()
		return
	}
	c.err = &lostError{addr: p.addr, err: err}
	calls := c.calls
	c.calls = nil
	c.mu.Unlock()
	// A connection that ends before any answer came back (a peer that
	// refuses the Mux's preamble, such as a node of an older version)
	// counts as a failed dial, so the peer is not dialed again at once.
	p.drop(c, c.lastRead.Load() == c.dialed, c.err)
	p.mu.Unlock()
	c.w.fail(err)
	for _, k := range calls {
		k.err = c.err
		close(k.done)
	}
}

// timedOut is told that a call sent at sent got no answer in time. If
// nothing at all was read since, the peer is taken for gone and the
// connection fails, so the other calls on it do not wait out their time
// too, and the next request dials again.
func (c *clientConn) timedOut(sent time.Time) {
	if c.lastRead.Load() < sent.UnixNano() {
		c.fail(errors.New("no answer to anything within the timeout"))
	}
}

// read decodes answers and completes their calls until the connection
// fails.
func (c *clientConn) read() {
	defer c.m.untrack(c.conn)
	r := bufio.NewReaderSize(c.conn, bufSize)
	dec := codec.NewDecoder(r, newMsgpack())
	var hdr [9]byte
	for first := true; ; first = false {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.fail(err)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if first {
			c.peer.answered()
		}
		status, id := hdr[0], binary.BigEndian.Uint64(hdr[1:])
		k := c.take(id)
		var err error
		switch status {
		case statusOK:
			var sink any
			if k != nil {
				err = dec.Decode(k.resp)
			} else {
				err = dec.Decode(&sink) // timed out or canceled: skip it
			}
		case statusError:
			var text string
			if err = dec.Decode(&text); err == nil && k != nil {
				k.err = errors.New(text)
			}
		default:
			err = fmt.Errorf("raftmux: answer with status %#x", status)
		}
		if err != nil {
			if k != nil {
				k.err = fmt.Errorf("raftmux: read an answer: %w", err)
				close(k.done)
			}
			c.fail(err)
			return
		}
		if k != nil {
			close(k.done)
		}
	}
}
