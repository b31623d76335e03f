package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proglog/proglog/logstore"
)

// storeDamage remembers that the local store holds a record that fails its
// checks below the latest snapshot, where Raft's log no longer has it: a
// read of it (DataLoss to the client) or a snapshot sent to a follower
// found it. The other nodes hold good copies. With Config.FetchRecord the
// node heals such a record from them (heal): a record's offset, time, key,
// headers and value come from the replicated entry, so a peer's copy
// encodes to the very frame that was damaged, and logstore.Repair writes it
// in place. Until then, and without FetchRecord, the node says so and, if
// it leads, hands leadership over: a leader with a damaged snapshot could
// never bring a follower that needs one up to date.
type storeDamage struct {
	seen    atomic.Bool
	healing sync.Map // offsets being healed
}

// noteDamage reports err, a logstore.ErrCorrupt from the store or from a
// snapshot of it, once, starts healing the damaged record if the error
// names it, and steps down if this node leads.
func (l *Log) noteDamage(err error) {
	if !errors.Is(err, logstore.ErrCorrupt) {
		return
	}
	var ce *logstore.CorruptError
	healable := l.cfg.FetchRecord != nil && errors.As(err, &ce) && ce.HasRecord
	if l.damage.seen.CompareAndSwap(false, true) {
		if healable {
			l.logger.Error("cluster: the local store holds a damaged record; healing it from a peer's copy (it reads as DataLoss until then)", "err", err)
		} else {
			l.logger.Error("cluster: the local store holds a damaged record that raft's log no longer has; the other nodes hold good copies, and this node serves DataLoss for it until its data dir is rebuilt from them (see the README)", "err", err)
		}
	}
	if healable {
		l.heal(ce.Record)
	}
	l.stepDown()
}

// healRetry is how long heal waits between rounds over the peers.
const healRetry = time.Second

// heal fetches the record at offset from a peer and repairs the local
// store with it, in the background, asking each peer in turn until one
// answers and retrying until the node closes.
func (l *Log) heal(offset uint64) {
	if _, busy := l.damage.healing.LoadOrStore(offset, struct{}{}); busy {
		return
	}
	started := l.background(func() {
		defer l.damage.healing.Delete(offset)
		for {
			done, err := l.healOnce(offset)
			if done {
				return
			}
			l.logger.Warn("cluster: healing a damaged record", "offset", offset, "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(healRetry):
			}
		}
	})
	if !started {
		l.damage.healing.Delete(offset)
	}
}

// healOnce asks the peers for the record at offset; done says whether
// there is nothing more to do.
func (l *Log) healOnce(offset uint64) (done bool, err error) {
	cfg := l.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return false, err
	}
	err = errors.New("no peer to ask")
	for _, s := range cfg.Configuration().Servers {
		if string(s.ID) == l.cfg.NodeID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), healFetchTimeout)
		go func() { // Close ends the fetch
			select {
			case <-l.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		var rec logstore.Record
		rec, err = l.cfg.FetchRecord(ctx, string(s.Address), offset)
		cancel()
		if err != nil {
			err = fmt.Errorf("%s: %w", s.ID, err)
			continue
		}
		rec.Offset = offset
		switch err = l.current().log.Repair(rec); {
		case err == nil:
			l.logger.Info("cluster: healed a damaged record from a peer's copy", "offset", offset, "peer", s.ID)
			return true, nil
		case errors.Is(err, logstore.ErrNotDamaged), errors.Is(err, logstore.ErrOutOfRange):
			return true, nil // healed meanwhile, or retention took it
		}
		err = fmt.Errorf("repair with %s's copy: %w", s.ID, err)
	}
	return false, err
}

// healFetchTimeout bounds one peer's answer.
const healFetchTimeout = 10 * time.Second

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

// CanWrite says why this node cannot take writes now, or nil: its disk is
// full (ErrDiskFull), it failed to apply committed entries (ErrApplyFailed,
// until restarted), or its store writer is retrying a failing store.
// The health check's proglog.Writes reports it.
func (l *Log) CanWrite() error {
	if err := l.DiskFull(); err != nil {
		return err
	}
	if l.fsm.broken.Load() {
		return ErrApplyFailed
	}
	if stalled := l.fsm.w.stalled.Load(); stalled != nil {
		return fmt.Errorf("cluster: the local store cannot be written: %w", *stalled)
	}
	return nil
}
