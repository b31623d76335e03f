package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"

	"github.com/proglog/proglog/logstore"
)

// A full disk stops writes, not the node. The disk monitor keeps two facts
// about the file systems under DataDir (the directory itself, raft/ and
// log/, in case they are separate mounts):
//
//   - low: at the latest probe one of them had less free space than the
//     reserve (Config.DiskReserve). Appends are refused up front with
//     ErrDiskFull, so the disk does not fill to the last byte: the reserve
//     is left for what must not fail, Raft's own entries (a new leader's
//     no-op, configuration changes), the store writer catching up with what
//     was committed, snapshots.
//   - full: a write to Raft's log failed with ENOSPC (the reserve was used
//     up anyway, or there is none). hashicorp/raft answers the entries of
//     that write with the error and, on the leader, steps down; appends are
//     refused with ErrDiskFull until space is back. The Raft log refuses
//     appends after a failed write until it is reopened (logstore's failed
//     state), so the probe reopens it first (raftStore.recover) and only
//     then clears the fact.
//
// A leader whose disk is full keeps leading (and refusing appends): it
// does not hand leadership over, because hashicorp/raft v1.8.0 can wedge
// around a leadership transfer (a step-down during the transfer leaves
// "transfer in progress" set for good, hashicorp/raft#696; a step-down
// while pipelining can deadlock the replication goroutine and with it
// Shutdown), and a transfer every second while the disk stays full would
// court both.
//
// Probes run every diskProbeInterval in the background (the node's shared
// DiskWatch, or a DiskWatch of the Log's own), and on an append
// when the latest is older than diskProbeStale or found less than twice
// the reserve free, so a burst of appends cannot run through the reserve
// between two background probes. Each is
// one statfs per directory. Writes resume by themselves at the first probe
// that finds the reserve free again.
type diskMonitor struct {
	dirs    []string // probed; the first names the data dir in messages
	reserve uint64   // 0: no reserve, only a failed write stops appends
	// recoverFree is the free space a probe must find before it reopens
	// the Raft log after a failed write: opening cuts the torn write and
	// keeps a copy of it, which needs some space (at least a segment).
	recoverFree uint64
	logger      *slog.Logger
	// statfs returns the bytes free to unprivileged writers under dir
	// (freeBytes; tests swap it in while the node runs).
	statfs atomic.Pointer[func(dir string) (uint64, error)]
	// recover makes the Raft log writable again after a failed write.
	recover func() error
	// watch runs the background probes: a node's shared one, or (nil when
	// given) one of the monitor's own, made by start (ownWatch). devs are
	// the file systems of dirs (0: unknown, probed on its own), for sharing
	// a round's statfs among monitors.
	watch    *DiskWatch
	ownWatch bool
	devs     []uint64
	// custom is set once a test swapped statfs: its answers are the
	// monitor's own, never shared.
	custom atomic.Bool

	low       atomic.Bool
	full      atomic.Bool
	free      atomic.Uint64 // at the latest probe (the least of dirs)
	lastProbe atomic.Int64  // Unix nanoseconds
	probeMu   sync.Mutex    // held by the one goroutine probing; guards reported
	reported  bool          // whether "disk full" was logged and not yet "space again"
	startOnce sync.Once
	stopOnce  sync.Once
	stopCh    chan struct{}
}

const (
	diskProbeInterval = time.Second
	diskProbeStale    = 100 * time.Millisecond
)

func newDiskMonitor(dirs []string, reserve, recoverFree uint64, logger *slog.Logger, recover func() error, watch *DiskWatch) *diskMonitor {
	m := &diskMonitor{
		dirs: dirs, reserve: reserve, recoverFree: max(reserve, recoverFree), logger: logger, recover: recover,
		watch: watch, stopCh: make(chan struct{}),
	}
	f := freeBytes
	m.statfs.Store(&f)
	return m
}

func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// start probes once and then, through the DiskWatch (one of its own if it
// was given none), every diskProbeInterval until stop.
func (m *diskMonitor) start() {
	m.startOnce.Do(func() {
		m.probe()
		if m.watch == nil {
			m.watch, m.ownWatch = NewDiskWatch(), true
		}
		for _, d := range m.dirs {
			m.devs = append(m.devs, device(d))
		}
		m.watch.add(m)
	})
}

// stop ends the background probes (a round under way may still probe
// once; see probeShared's check of stopped before it reopens anything).
func (m *diskMonitor) stop() {
	m.stopOnce.Do(func() {
		close(m.stopCh)
		if m.watch == nil {
			return // never started
		}
		m.watch.remove(m)
		if m.ownWatch {
			m.watch.Close()
		}
	})
}

// probe measures free space and, once recoverFree is free after a failed
// write, makes the Raft log writable again.
func (m *diskMonitor) probe() { m.probeShared(nil) }

// probeShared is probe taking a file system's free space from shared, by
// device, when another monitor measured it this round, and leaving what
// it measures there.
func (m *diskMonitor) probeShared(shared map[uint64]uint64) {
	if !m.probeMu.TryLock() {
		return // another goroutine is probing: its result will do
	}
	defer m.probeMu.Unlock()
	m.lastProbe.Store(time.Now().UnixNano())
	free := uint64(1<<64 - 1)
	statfs := *m.statfs.Load()
	if m.custom.Load() {
		shared = nil
	}
	for i, d := range m.dirs {
		var dev uint64
		if shared != nil && i < len(m.devs) {
			dev = m.devs[i]
		}
		f, ok := shared[dev]
		if dev == 0 || !ok {
			var err error
			if f, err = statfs(d); err != nil {
				m.logger.Warn("cluster: cannot measure free disk space", "err", err)
				return
			}
			if dev != 0 {
				shared[dev] = f
			}
		}
		free = min(free, f)
	}
	m.free.Store(free)
	low := free < m.reserve
	m.low.Store(low)
	if free >= m.recoverFree && m.full.Load() && !m.stopped() {
		if err := m.recover(); err != nil {
			m.logger.Error("cluster: disk has space again, but the raft log cannot be reopened; writes stay refused", "err", err)
			return
		}
		m.full.Store(false)
	}
	switch {
	case (low || m.full.Load()) && !m.reported:
		m.reported = true
		m.logger.Error("cluster: disk full: refusing appends until space is freed",
			"dir", m.dirs[0], "free_bytes", free, "reserve_bytes", m.reserve)
	case !low && !m.full.Load() && m.reported:
		m.reported = false
		m.logger.Info("cluster: disk has space again: taking appends", "dir", m.dirs[0], "free_bytes", free)
	}
}

func (m *diskMonitor) stopped() bool {
	select {
	case <-m.stopCh:
		return true
	default:
		return false
	}
}

// noteWriteErr records a failed write to Raft's log or stable store; it
// reports whether the error is ENOSPC.
func (m *diskMonitor) noteWriteErr(err error) bool {
	if !errors.Is(err, syscall.ENOSPC) {
		return false
	}
	m.full.Store(true)
	return true
}

// check returns an ErrDiskFull while appends must be refused, probing
// first if the latest probe is stale.
func (m *diskMonitor) check() error {
	// Close to the reserve, every append probes (a statfs per directory
	// costs microseconds), so a burst cannot run far past it.
	near := m.free.Load() < 2*m.reserve
	if near || time.Since(time.Unix(0, m.lastProbe.Load())) > diskProbeStale {
		m.probe()
	}
	switch {
	case m.full.Load():
		return fmt.Errorf("%w: a write to this node's Raft log in %s failed: no space left on device; writes resume by themselves once space is freed",
			ErrDiskFull, m.dirs[0])
	case m.low.Load():
		return fmt.Errorf("%w: %s has %d bytes free, below the reserve of %d bytes (--disk-reserve); writes resume by themselves once space is freed",
			ErrDiskFull, m.dirs[0], m.free.Load(), m.reserve)
	}
	return nil
}

// leaderless returns ErrDiskFull when no leader is known and this node's
// disk is full; nil otherwise.
func (m *diskMonitor) leaderless(_ raft.ServerAddress, id raft.ServerID) error {
	if id != "" || !m.isFull() {
		return nil
	}
	return m.check()
}

// leaderlessDiskFull returns ErrDiskFull for an append that found no
// leader on a one-member cluster whose disk is full: its Raft log cannot
// take the no-op entry a new leader writes, so it steps down again at
// once, and the full disk is why there is no leader. In a bigger cluster
// an election may have other causes, and the append fails as it would
// without a full disk.
func (l *Log) leaderlessDiskFull() error {
	err := l.disk.leaderless(l.raft.LeaderWithID())
	if err == nil || l.otherVoters() > 0 {
		return nil
	}
	return err
}

// otherVoters counts the voters of the latest configuration besides this
// node (0 if it cannot be read).
func (l *Log) otherVoters() int {
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(l.cfg.NodeID) {
			n++
		}
	}
	return n
}

// annotate adds ErrDiskFull to the error raft answered an append with
// while a write to the Raft log failed for want of space: an append that
// failed because of it (leadership lost, raft shut down) does not carry
// the store's error. One that does (raftStore.StoreLogs wraps ENOSPC in
// ErrDiskFull, and logCache keeps the chain) is left as it is.
func (m *diskMonitor) annotate(err error) error {
	if !m.full.Load() || errors.Is(err, ErrDiskFull) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDiskFull, err)
}

// isFull reports, without probing, whether appends are being refused.
func (m *diskMonitor) isFull() bool { return m.full.Load() || m.low.Load() }

// DiskFull returns an ErrDiskFull while this node refuses appends for want
// of disk space (as AppendBatch would), nil otherwise: what the latest
// probe found, at most a second old.
func (l *Log) DiskFull() error {
	if !l.disk.isFull() {
		return nil
	}
	if err := l.disk.check(); err != nil {
		return err
	}
	return nil
}

// diskReserve is DiskReserve with its default applied.
func (c Config) diskReserve() uint64 {
	switch {
	case c.DiskReserve < 0:
		return 0
	case c.DiskReserve > 0:
		return uint64(c.DiskReserve)
	}
	return 2 * c.segmentBytes()
}

// segmentBytes is the segment size of the store and of Raft's log.
func (c Config) segmentBytes() uint64 {
	if c.Store.MaxSegmentBytes > 0 {
		return uint64(c.Store.MaxSegmentBytes)
	}
	return uint64(logstore.DefaultConfig().MaxSegmentBytes)
}
