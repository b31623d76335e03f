package cluster

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DiskWatch runs the background disk probes (see diskMonitor) of every Log
// given it in Config.DiskWatch from one goroutine, with one statfs per
// file system each round for all of them. On its own, each Log runs a
// goroutine that statfs'es its three directories every second: for a
// node hosting hundreds of partitions that was about a twentieth of an
// otherwise idle node's CPU. A node shares one DiskWatch among its
// system group and its partitions, and closes it after them.
type DiskWatch struct {
	mu       sync.Mutex // guards monitors
	monitors map[*diskMonitor]struct{}
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// NewDiskWatch starts a DiskWatch; Close stops it.
func NewDiskWatch() *DiskWatch {
	w := &DiskWatch{monitors: map[*diskMonitor]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Close stops the probes and waits for the latest round to end. Logs
// still open go on probing on their appends (diskMonitor.check).
func (w *DiskWatch) Close() {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
	})
}

func (w *DiskWatch) add(m *diskMonitor) {
	w.mu.Lock()
	w.monitors[m] = struct{}{}
	w.mu.Unlock()
}

func (w *DiskWatch) remove(m *diskMonitor) {
	w.mu.Lock()
	delete(w.monitors, m)
	w.mu.Unlock()
}

func (w *DiskWatch) run() {
	defer close(w.done)
	t := time.NewTicker(diskProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.round()
		}
	}
}

// round probes every monitor once.
func (w *DiskWatch) round() {
	w.mu.Lock()
	ms := make([]*diskMonitor, 0, len(w.monitors))
	for m := range w.monitors {
		ms = append(ms, m)
	}
	w.mu.Unlock()
	free := map[uint64]uint64{} // by device, this round
	for _, m := range ms {
		m.probeShared(free)
	}
}

// device identifies the file system dir is on; 0 if it cannot tell.
func device(dir string) uint64 {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return 0
	}
	return uint64(st.Dev)
}
