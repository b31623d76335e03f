package logstore

import (
	"context"
	"errors"
	"testing"
)

// Under SyncNever, sealing leaves segments for Sync to make durable; Sync
// owes nothing afterwards, and a closed log refuses it.
func TestSyncSealedSegmentsUnderSyncNever(t *testing.T) {
	tests := []struct {
		name         string
		sync         SyncPolicy
		wantUnsynced bool
	}{
		{"never", SyncNever, true},
		{"always", SyncAlways, false},
		{"interval", SyncInterval, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Sync = tt.sync
			cfg.MaxSegmentBytes = 4096
			l, err := Open(t.TempDir(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			value := make([]byte, 500)
			for range 40 {
				if _, err := l.Append(context.Background(), value); err != nil {
					t.Fatal(err)
				}
			}
			unsynced := func() (n int) {
				l.flushMu.Lock()
				defer l.flushMu.Unlock()
				for _, s := range l.segs.Load().segs {
					if s.unsynced {
						n++
					}
				}
				return n
			}
			if segs := l.Stats().Segments; segs < 3 {
				t.Fatalf("segments = %d, want several", segs)
			}
			if got := unsynced() > 0; got != tt.wantUnsynced {
				t.Fatalf("unsynced sealed segments before Sync: %v, want %v", got, tt.wantUnsynced)
			}
			if err := l.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if n := unsynced(); n != 0 {
				t.Fatalf("%d sealed segments still unsynced after Sync", n)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Sync after Close = %v, want ErrClosed", err)
			}
		})
	}
}
