package cluster

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/proglog/proglog/logstore"
)

// storeDamage remembers that the local store holds a record that fails its
// checks below the latest snapshot, where Raft's log no longer has it: a
// read of it (DataLoss to the client) or a snapshot sent to a follower
// found it. The other nodes hold good copies; healing from them is not
// built, so the node says so and, if it leads, hands leadership over: a
// leader with a damaged snapshot could never bring a follower that needs
// one up to date.
type storeDamage struct {
	seen atomic.Bool
}

// noteDamage reports err, a logstore.ErrCorrupt from the store or from a
// snapshot of it, once, and steps down if this node leads.
func (l *Log) noteDamage(err error) {
	if !errors.Is(err, logstore.ErrCorrupt) {
		return
	}
	if l.damage.seen.CompareAndSwap(false, true) {
		l.logger.Error("cluster: the local store holds a damaged record that raft's log no longer has; the other nodes hold good copies, and this node serves DataLoss for it until its data dir is rebuilt from them (see the README)", "err", err)
	}
	l.stepDown()
}

// verifiedStream passes a snapshot stream through logstore.Verify on its
// way out, after the snapshot header (skip bytes), so a damaged record in a
// linked segment fails the stream where it is instead of reaching the
// follower, and is reported. Closing it before the end stops the check
// without a verdict (a restart reads only the header).
type verifiedStream struct {
	r      io.Reader
	skip   int
	pw     *io.PipeWriter
	done   chan error
	closer io.Closer
	ended  bool
}

var errStreamClosed = errors.New("cluster: snapshot stream closed before its end")

func newVerifiedStream(r io.Reader, skip int, closer io.Closer, onCorrupt func(error)) *verifiedStream {
	pr, pw := io.Pipe()
	v := &verifiedStream{r: r, skip: skip, pw: pw, done: make(chan error, 1), closer: closer}
	go func() {
		err := logstore.Verify(pr)
		if errors.Is(err, logstore.ErrCorrupt) {
			onCorrupt(err)
		}
		pr.CloseWithError(err)
		v.done <- err
	}()
	return v
}

func (v *verifiedStream) Read(p []byte) (int, error) {
	if v.ended {
		return 0, io.EOF
	}
	n, err := v.r.Read(p)
	if b := p[:n]; len(b) > 0 {
		if k := min(v.skip, len(b)); k > 0 {
			b, v.skip = b[k:], v.skip-k
		}
		if len(b) > 0 {
			if _, werr := v.pw.Write(b); werr != nil {
				return 0, werr
			}
		}
	}
	if errors.Is(err, io.EOF) {
		v.ended = true
		v.pw.Close()
		if verr := <-v.done; verr != nil {
			return 0, verr
		}
	}
	return n, err
}

func (v *verifiedStream) Close() error {
	if !v.ended {
		v.ended = true
		v.pw.CloseWithError(errStreamClosed)
		<-v.done
	}
	return v.closer.Close()
}
