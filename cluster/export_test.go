package cluster

import (
	"fmt"
	"sync"
	"time"

	"github.com/proglog/proglog/logstore"
)

// BreakStore closes the node's local store under the store writer, the
// way a failing disk would make its writes fail.
func BreakStore(l *Log) error { return l.current().log.Close() }

// SetFreeBytes makes the node's disk monitor measure free space with f
// instead of statfs, and probe at once.
func SetFreeBytes(l *Log, f func(dir string) (uint64, error)) {
	l.disk.statfs.Store(&f)
	l.disk.custom.Store(true)
	l.disk.probe()
}

// HeartbeatTimeout is the heartbeat timeout raft runs with.
func HeartbeatTimeout(l *Log) time.Duration { return l.raft.ReloadableConfig().HeartbeatTimeout }

// FailWriter makes the node's store writer fail for good, as an ErrCorrupt
// from the store would: the node stops applying.
func FailWriter(l *Log) {
	l.fsm.w.fail(fmt.Errorf("%w: injected by a test", logstore.ErrCorrupt))
}

// HoldWriter stops the node's store writer before its next write, so the
// store lags behind what is applied, until release is called.
func HoldWriter(l *Log) (release func()) {
	_, release = StepWriter(l)
	return release
}

// StepWriter makes the node's store writer wait before each write until
// step lets that one write go; done lets every write go again.
func StepWriter(l *Log) (step, done func()) {
	ch := make(chan struct{})
	l.fsm.w.held.Store(&ch)
	var once sync.Once
	return func() { ch <- struct{}{} }, func() {
		once.Do(func() {
			l.fsm.w.held.Store(nil)
			close(ch)
		})
	}
}

// StoreNext is the offset the node's local store writes next.
func StoreNext(l *Log) uint64 {
	_, next := l.current().log.Bounds()
	return next
}
