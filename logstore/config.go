package logstore

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyncPolicy says when appended records are forced to stable storage and
// therefore when Append returns.
type SyncPolicy int

const (
	// SyncAlways acknowledges an append only after the fdatasync that covers
	// it. Concurrent appends share one write and one fdatasync (group commit).
	// A crash loses nothing that was acknowledged. The default.
	SyncAlways SyncPolicy = iota
	// SyncInterval acknowledges after the write to the page cache and runs
	// fdatasync every Config.SyncInterval. A machine crash (not a process crash)
	// loses at most the records acknowledged during the last interval.
	SyncInterval
	// SyncNever never calls fdatasync while the log is open (the OS writes
	// back when it likes; Close syncs). A process crash loses nothing that was
	// acknowledged; a machine crash may lose anything not yet written back,
	// and may leave a sealed segment that Open reports as corrupt.
	SyncNever
)

// ParseSyncPolicy parses "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("logstore: unknown sync policy %q (want always, interval or never)", s)
}

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Limits the format imposes: record positions are stored as uint32.
const (
	minSegmentBytes = 1024
	maxSegmentBytes = 1<<32 - 1
	maxRecordLimit  = 1 << 30
)

// Config configures a Log. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// MaxSegmentBytes is the store size at which the active segment is sealed
	// and a new one started (a segment may exceed it by one record). Default 64 MiB,
	// at least 1 KiB, at most 4 GiB-1.
	MaxSegmentBytes int64
	// MaxRecordBytes bounds the value of a new record; longer values get
	// ErrRecordTooLarge before any allocation or disk work. Records already
	// on disk stay readable if it is lowered. Default 1 MiB, at most 1 GiB.
	MaxRecordBytes int
	// Sync is the durability policy; default SyncAlways.
	Sync SyncPolicy
	// DropBehind, when > 0, is how many bytes at the end of the log stay in
	// the page cache: pages further behind are dropped once on disk
	// (posix_fadvise POSIX_FADV_DONTNEED; under SyncInterval and SyncNever
	// they are written back first). For logs read back mostly near their
	// end: Raft's, and record stores whose operator bounds their cache
	// (serve's --page-cache-tail). Reads of what was dropped still work;
	// they go to the disk. 0 keeps every page until the kernel needs the
	// memory. A read wholly behind the cached tail drops the pages it read
	// too (segment.dropRead), so that a reader catching up neither fills
	// the cache nor takes fresh pages.
	DropBehind int64
	// SyncInterval is the fdatasync period under SyncInterval; default 100ms.
	SyncInterval time.Duration
	// RetentionBytes, when > 0, deletes the oldest sealed segments while the
	// stores together exceed it. The active segment is never deleted.
	RetentionBytes int64
	// RetentionAge, when > 0, deletes sealed segments whose newest record is older.
	RetentionAge time.Duration
	// Logger receives recovery and failure reports; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, gets the log's metrics (unregistered on Close).
	Registerer prometheus.Registerer
	// Now is the clock for record times and retention; nil means time.Now.
	Now func() time.Time

	// format is the version new segments get; 0 means the current one.
	// Tests set 1 to write the previous format (export_test.go).
	format uint16
	// timeEvery is the store bytes between time samples; 0 means
	// timeIndexEvery. Tests set it small to sample small segments densely.
	timeEvery int64
}

// DefaultConfig returns the configuration zero fields fall back to.
func DefaultConfig() Config {
	return Config{
		MaxSegmentBytes: 64 << 20,
		MaxRecordBytes:  1 << 20,
		Sync:            SyncAlways,
		SyncInterval:    100 * time.Millisecond,
	}
}

// withDefaults fills zero fields and checks the fields against each other.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.MaxSegmentBytes == 0 {
		c.MaxSegmentBytes = d.MaxSegmentBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = d.MaxRecordBytes
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.timeEvery == 0 {
		c.timeEvery = timeIndexEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.MaxSegmentBytes < minSegmentBytes || c.MaxSegmentBytes > maxSegmentBytes:
		return c, fmt.Errorf("logstore: MaxSegmentBytes %d not in [%d, %d]", c.MaxSegmentBytes, minSegmentBytes, int64(maxSegmentBytes))
	case c.MaxRecordBytes < 0 || c.MaxRecordBytes > maxRecordLimit:
		return c, fmt.Errorf("logstore: MaxRecordBytes %d not in [1, %d]", c.MaxRecordBytes, maxRecordLimit)
	case c.Sync < SyncAlways || c.Sync > SyncNever:
		return c, fmt.Errorf("logstore: unknown sync policy %d", int(c.Sync))
	case c.SyncInterval < 0:
		return c, fmt.Errorf("logstore: negative SyncInterval %v", c.SyncInterval)
	case c.DropBehind < 0:
		return c, fmt.Errorf("logstore: negative DropBehind %d", c.DropBehind)
	case c.RetentionBytes < 0:
		return c, fmt.Errorf("logstore: negative RetentionBytes %d", c.RetentionBytes)
	case c.RetentionAge < 0:
		return c, fmt.Errorf("logstore: negative RetentionAge %v", c.RetentionAge)
	}
	return c, nil
}
