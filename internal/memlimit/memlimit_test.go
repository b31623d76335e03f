package memlimit

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		gogc        int64
		live, other uint64
		want        int64
	}{
		{100, 4 * mib, 6 * mib, 36 * mib},     // a small heap: the floor
		{100, 20 * mib, 6 * mib, 36 * mib},    // 20 + 10 + 6
		{100, 40 * mib, 6 * mib, 66 * mib},    // past the floor: half GOGC's headroom
		{200, 40 * mib, 6 * mib, 86 * mib},    // GOGC=200: 40 + 40 + 6
		{-1, 40 * mib, 6 * mib, 66 * mib},     // GOGC set off meanwhile: as 100
		{100, math.MaxUint64 / 4, 0, 1 << 62}, // no overflow
	} {
		if got := memoryLimitFor(36*mib, tt.gogc, tt.live, tt.other); got != tt.want {
			t.Errorf("memoryLimitFor(36MiB, GOGC=%d, live %d, other %d) = %d, want %d", tt.gogc, tt.live, tt.other, got, tt.want)
		}
	}
}

// TestMemoryLimitRestored checks that the limit applies while a node runs
// and that the last node to stop in a process restores the one it found.
func TestMemoryLimitRestored(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := debug.SetMemoryLimit(-1)
	stop1 := Start(1<<40, logger)
	stop2 := Start(1<<40, logger)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit while running %d, want %d", got, int64(1<<40))
	}
	stop1()
	stop1() // stopping twice is harmless
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit while one node still runs %d, want %d", got, int64(1<<40))
	}
	stop2()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit after both stopped %d, want the one before, %d", got, before)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	Start(1<<40, logger)()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("with GOMEMLIMIT set the limit became %d, want %d untouched", got, before)
	}
}
