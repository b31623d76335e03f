package raftmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Request types and response statuses: a frame's first byte. Request types
// start at 1 so a zero byte is never a valid frame.
const (
	reqAppendEntries  byte = 1
	reqRequestVote    byte = 2
	reqRequestPreVote byte = 3
	reqTimeoutNow     byte = 4

	statusOK    byte = 0x80
	statusError byte = 0x81
)

// bufSize is each connection's read and write buffer (NetworkTransport:
// 256 KiB each way per connection, and it has many).
const bufSize = 64 << 10

// frame is a request or an answer waiting for the writer.
type frame struct {
	kind  byte // a request type or a status
	id    uint64
	group string // requests only
	body  any    // encoded with msgpack; an answer's error is its text
	lazy  bool   // idle traffic: may wait FlushDelay for company
	size  int    // estimated encoded size, for MaxQueuedBytes
}

// newMsgpack is the handle NetworkTransport uses by default (time.Time as
// an extension, the format older go-msgpack versions read too).
func newMsgpack() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.TimeNotBuiltin = true
	return h
}

// writer is a connection's single writer: senders queue frames, it
// writes all that are queued with one flush.
type writer struct {
	conn    net.Conn
	delay   time.Duration
	timeout time.Duration
	maxN    int
	maxB    int

	mu     sync.Mutex // guards q, qBytes, err, space, idle
	q      []frame
	qBytes int
	err    error         // why the writer stopped; set once
	space  chan struct{} // closed (and replaced) when the writer takes the queue
	// idle: the writer waits for a first frame. A lazy frame wakes it
	// only then; while it waits out FlushDelay only an urgent one does,
	// so idle traffic costs the writer one wake-up per FlushDelay, not one
	// per frame.
	idle    bool
	wake    chan struct{} // capacity 1: there are frames to look at
	closed  chan struct{} // closed with err
	stopped chan struct{} // closed when run returns: no frame is read after
}

func newWriter(conn net.Conn, cfg Config) *writer {
	return &writer{
		conn: conn, delay: cfg.FlushDelay, timeout: cfg.Timeout, maxN: cfg.MaxQueued, maxB: cfg.MaxQueuedBytes,
		space: make(chan struct{}), wake: make(chan struct{}, 1), closed: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// send queues f, waiting for room up to the writer's timeout or until
// cancel is closed.
func (w *writer) send(f frame, cancel <-chan struct{}) error {
	var timer *time.Timer
	for {
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		if len(w.q) == 0 || (len(w.q) < w.maxN && w.qBytes+f.size <= w.maxB) {
			w.q = append(w.q, f)
			w.qBytes += f.size
			signal := !f.lazy || w.idle
			w.mu.Unlock()
			if signal {
				select {
				case w.wake <- struct{}{}:
				default:
				}
			}
			return nil
		}
		space := w.space
		w.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(w.timeout)
			defer timer.Stop()
		}
		select {
		case <-space:
		case <-w.closed:
		case <-cancel:
			return errCanceled
		case <-timer.C:
			return fmt.Errorf("%w: the connection's send queue stayed full", ErrTimeout)
		}
	}
}

var errCanceled = errors.New("raftmux: canceled")

// fail stops the writer with err (the first error wins) and closes the
// connection, which ends its reader too.
func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
		w.q = nil
		close(w.closed)
	}
	w.mu.Unlock()
	w.conn.Close()
}

// sleep marks the writer idle if nothing is queued; true if it is.
func (w *writer) sleep() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idle = len(w.q) == 0
	return w.idle
}

// take moves the queued frames to batch and says whether any is urgent.
func (w *writer) take(batch []frame) ([]frame, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idle = false
	urgent := false
	for _, f := range w.q {
		urgent = urgent || !f.lazy
	}
	batch = append(batch, w.q...)
	clear(w.q)
	w.q = w.q[:0]
	w.qBytes = 0
	close(w.space)
	w.space = make(chan struct{})
	return batch, urgent
}

// run writes frames until the writer fails; it closes the connection.
func (w *writer) run() {
	defer close(w.stopped)
	bw := bufio.NewWriterSize(w.conn, bufSize)
	enc := codec.NewEncoder(bw, newMsgpack())
	var batch []frame
	var hdr [9]byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	encode := func() error {
		for i := range batch {
			f := &batch[i]
			hdr[0] = f.kind
			binary.BigEndian.PutUint64(hdr[1:], f.id)
			bw.Write(hdr[:])
			if f.kind < statusOK {
				bw.WriteByte(byte(len(f.group)))
				bw.WriteString(f.group)
			}
			if err := enc.Encode(f.body); err != nil {
				return fmt.Errorf("raftmux: encode: %w", err)
			}
			*f = frame{}
		}
		batch = batch[:0]
		return nil
	}
	for {
		if w.sleep() {
			select {
			case <-w.wake:
			case <-w.closed:
				return
			}
		}
		var urgent bool
		batch, urgent = w.take(batch)
		if len(batch) == 0 {
			continue
		}
		if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			w.fail(err)
			return
		}
		if err := encode(); err != nil {
			w.fail(err)
			return
		}
		if !urgent && w.delay > 0 {
			timer.Reset(w.delay)
		wait:
			for {
				select {
				case <-w.wake: // an urgent frame (or a stale signal)
					batch, urgent = w.take(batch)
					if err := encode(); err != nil {
						w.fail(err)
						return
					}
					if urgent {
						timer.Stop()
						break wait
					}
				case <-timer.C:
					batch, _ = w.take(batch) // the lazy frames that came meanwhile
					if err := encode(); err != nil {
						w.fail(err)
						return
					}
					break wait
				case <-w.closed:
					return
				}
			}
		}
		if err := bw.Flush(); err != nil {
			w.fail(fmt.Errorf("raftmux: write: %w", err))
			return
		}
	}
}
