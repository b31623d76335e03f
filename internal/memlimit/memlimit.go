// Package memlimit keeps the Go runtime's soft memory limit low while a
// process's live heap is small and raises it with the heap (see Start),
// and lets a server start again with the memory the limit makes the
// runtime hand back returned lazily (see ExecLazy).
package memlimit

import (
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Default is serve --memory-limit's default: the Go runtime's soft
// memory limit (heap, stacks and runtime metadata; not the binary's pages
// or the mmapped indexes) while the heap is small. A node producing 2M
// records of 100 B holds ~12 MB live and GOGC=100 lets the heap grow to
// twice that, up to ~35 MB with the runtime's own and more when the
// collector falls behind on a busy machine; 36MiB keeps the process's peak
// RSS near 60 MB without more collections in the steady state.
const Default = 36 << 20

// memoryLimitPoll is how often the limit follows the live heap.
const memoryLimitPoll = 500 * time.Millisecond

// memoryLimiter keeps the Go runtime's soft memory limit at
//
//	max(floor, live heap × (1 + GOGC/200) + the runtime's other memory)
//
// A soft limit never fails an allocation (the heap grows past it) but,
// fixed, it would make the collector run back to back once the live heap
// nears it, at up to half the CPU (the runtime's GC CPU limiter): a
// workload that needs more memory than the floor would crawl. Raising it
// with the live heap leaves the collector at least half the headroom GOGC
// gives it (GOGC=100: the heap may grow by half the live heap between
// collections instead of all of it), so a large heap costs at most twice
// the collections, and a small one is capped at floor. GOMEMLIMIT in the
// environment, or GOGC=off, leave the runtime's settings alone.
type memoryLimiter struct {
	floor   int64
	samples []metrics.Sample
	cycles  uint64 // GC cycles at the last adjustment
}

const (
	metricGCCycles  = "/gc/cycles/total:gc-cycles"
	metricHeapLive  = "/gc/heap/live:bytes"
	metricGOGC      = "/gc/gogc:percent"
	metricTotal     = "/memory/classes/total:bytes"
	metricReleased  = "/memory/classes/heap/released:bytes"
	metricHeapObj   = "/memory/classes/heap/objects:bytes"
	metricHeapUnuse = "/memory/classes/heap/unused:bytes"
	metricHeapFree  = "/memory/classes/heap/free:bytes"
)

// memoryLimitUsers counts the limiters running in this process (tests run
// several nodes in one); the last to stop restores the limit found.
var memoryLimitUsers struct {
	sync.Mutex
	n    int
	prev int64
}

// Start applies floor (0: none) and adjusts the limit after each
// collection until stop is called; stop restores the runtime's limit.
func Start(floor int64, logger *slog.Logger) (stop func()) {
	if floor <= 0 {
		return func() {}
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("GOMEMLIMIT is set: --memory-limit is ignored", "GOMEMLIMIT", v)
		return func() {}
	}
	m := &memoryLimiter{floor: floor, samples: []metrics.Sample{
		{Name: metricGCCycles}, {Name: metricHeapLive}, {Name: metricGOGC}, {Name: metricTotal},
		{Name: metricReleased}, {Name: metricHeapObj}, {Name: metricHeapUnuse}, {Name: metricHeapFree},
	}}
	metrics.Read(m.samples)
	if int64(m.value(metricGOGC)) < 0 {
		logger.Info("GOGC=off: --memory-limit is ignored")
		return func() {}
	}
	u := &memoryLimitUsers
	u.Lock()
	if u.n == 0 {
		u.prev = debug.SetMemoryLimit(floor)
	}
	u.n++
	u.Unlock()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(memoryLimitPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.adjust()
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(done)
		<-stopped
		u.Lock()
		defer u.Unlock()
		if u.n--; u.n == 0 {
			debug.SetMemoryLimit(u.prev)
		}
	})
}

func (m *memoryLimiter) value(name string) uint64 {
	for _, s := range m.samples {
		if s.Name == name && s.Value.Kind() == metrics.KindUint64 {
			return s.Value.Uint64()
		}
	}
	return 0
}

// adjust sets the limit after each collection (see memoryLimiter).
func (m *memoryLimiter) adjust() {
	metrics.Read(m.samples)
	cycles := m.value(metricGCCycles)
	if cycles == m.cycles {
		return
	}
	m.cycles = cycles
	u := &memoryLimitUsers
	u.Lock()
	defer u.Unlock()
	debug.SetMemoryLimit(memoryLimitFor(m.floor, int64(m.value(metricGOGC)), m.value(metricHeapLive),
		m.value(metricTotal)-m.value(metricReleased)-m.value(metricHeapObj)-m.value(metricHeapUnuse)-m.value(metricHeapFree)))
}

// memoryLimitFor is the limit for a live heap of live bytes, with other
// bytes of the runtime's own (stacks, metadata) besides the heap; GOGC
// (gogc) set off meanwhile counts as 100.
func memoryLimitFor(floor, gogc int64, live, other uint64) int64 {
	if gogc < 0 {
		gogc = 100
	}
	want := live + live*uint64(gogc)/200 + other
	if want > 1<<62 {
		want = 1 << 62
	}
	return max(floor, int64(want))
}
