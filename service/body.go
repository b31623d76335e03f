package service

import (
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// clientStreams are the procedures whose request body is a stream of
// messages that may be minutes apart: the body deadline covers only their
// first message.
var clientStreams = map[string]bool{
	logv1connect.LogServiceProduceStreamProcedure:                         true,
	"/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo":      true,
	"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo": true,
}

// bodyDeadline gives each request with a body timeout to deliver it: the
// whole body, or the first message of a client stream. A request that
// sent its headers and then stalls holds a goroutine and its buffers; past
// the deadline reading its body fails, and the call ends with an error.
// The deadline is lifted once the body (or first message) is in, so it
// never cuts a stream that is legitimately long: a tail (ConsumeStream)
// has sent its whole body at the start, a producer its first message.
//
// Anonymous callers, whose bodies are small (smallRequestBytes), get the
// timeout for the whole body. For authenticated callers it is an idle
// timeout: data arriving pushes the deadline on, so a large batch over a
// slow link is not cut while it keeps moving.
//
// Over HTTP/2 the deadline is a timer of the request's own that, when it
// fires, expires the stream's read deadline at once (which needs no help
// from the connection's serve goroutine). Setting, moving and lifting a
// deadline with SetReadDeadline instead costs a message to the serve
// goroutine and a timer there each time: two goroutine hand-offs on every
// unary call, the largest cost proglog added to one (issue 10).
func bodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		body := &deadlineBody{
			ReadCloser: r.Body, timeout: timeout,
			stream: clientStreams[path.Clean(r.URL.Path)],
			// classify, without copying the connection state.
			extend: r.TLS != nil && len(r.TLS.VerifiedChains) > 0,
		}
		if d, ok := w.(readDeadliner); ok && r.ProtoMajor == 2 {
			t := &expiry{d: d}
			t.timer = time.AfterFunc(timeout, t.expire)
			body.timer = t
			r.Body = body
			next.ServeHTTP(w, r)
			t.stop()
			return
		}
		rc := http.NewResponseController(w)
		body.set = time.Now()
		if err := rc.SetReadDeadline(body.set.Add(timeout)); err != nil {
			next.ServeHTTP(w, r) // not supported by this ResponseWriter
			return
		}
		body.rc = rc
		r.Body = body
		next.ServeHTTP(w, r)
	})
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// expiry is the body deadline of an HTTP/2 request: when its timer fires
// it sets a read deadline in the past, which fails the stream's body at
// once. It never touches the ResponseWriter after the handler returned.
type expiry struct {
	timer *time.Timer
	mu    sync.Mutex // guards d
	d     readDeadliner
}

func (e *expiry) expire() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.d != nil {
		_ = e.d.SetReadDeadline(time.Unix(1, 0))
	}
}

// stop ends the timer for good: the handler returned.
func (e *expiry) stop() {
	e.timer.Stop()
	e.mu.Lock()
	e.d = nil
	e.mu.Unlock()
}

// errBodyTimeout is what reading a request body returns once its deadline
// passed; connect-go passes its code on to the client.
var errBodyTimeout = connect.NewError(connect.CodeDeadlineExceeded, errors.New("request body not received within the server's body timeout"))

// deadlineBody lifts the read deadline when the body, or its first
// enveloped message, has been read.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController // HTTP/1.1: the connection's deadline
	timer   *expiry                  // HTTP/2: the request's own timer
	timeout time.Duration
	stream  bool      // lift after the first message rather than at the end
	extend  bool      // data arriving pushes the deadline on
	set     time.Time // when the deadline was last set
	lifted  bool
	// The first message's 5-byte envelope prefix (flags, big-endian
	// length: gRPC, gRPC-Web and Connect streaming alike), and how much of
	// its payload is still to come once the prefix is in.
	prefix  [5]byte
	got     int
	payload int
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case b.lifted:
	case err == io.EOF || b.stream && b.firstMessageIn(p[:n]):
		b.lifted = true
		if b.timer != nil {
			b.timer.timer.Stop()
		} else {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case b.extend && n > 0 && b.timer != nil:
		b.timer.timer.Reset(b.timeout)
	case b.extend && n > 0:
		// Moving the connection's deadline is not free: do it only
		// once a quarter of it has passed, so that small bodies never pay.
		if now := time.Now(); now.Sub(b.set) > b.timeout/4 {
			b.set = now
			_ = b.rc.SetReadDeadline(now.Add(b.timeout))
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errBodyTimeout
	}
	return n, err
}

// firstMessageIn follows the first message through the bytes read and
// reports whether it is complete.
func (b *deadlineBody) firstMessageIn(p []byte) bool {
	if b.got < len(b.prefix) {
		k := copy(b.prefix[b.got:], p)
		b.got += k
		p = p[k:]
		if b.got < len(b.prefix) {
			return false
		}
		b.payload = int(binary.BigEndian.Uint32(b.prefix[1:]))
	}
	b.payload -= len(p)
	return b.payload <= 0
}
