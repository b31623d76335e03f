package logstore

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestWriteBack: a log that does not fdatasync every append asks the
// kernel to write its pages back once hintEvery bytes are waiting (so
// they never pile up into a burst that stalls every fdatasync on the
// disk); one that does (SyncAlways) never needs to.
func TestWriteBack(t *testing.T) {
	value := bytes.Repeat([]byte("w"), 300<<10)
	for _, tc := range []struct {
		policy SyncPolicy
		kicks  bool
	}{
		{SyncInterval, true},
		{SyncNever, true},
		{SyncAlways, false},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			l, err := Open(t.TempDir(), Config{Sync: tc.policy, SyncInterval: time.Hour, MaxSegmentBytes: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			active := func() *segment { segs := l.segs.Load().segs; return segs[len(segs)-1] }
			for i := range 8 {
				if _, err := l.Append(context.Background(), value); err != nil {
					t.Fatal(err)
				}
				s := active()
				l.flushMu.Lock()
				size, kicked := s.size, s.kicked
				l.flushMu.Unlock()
				switch {
				case !tc.kicks && kicked != 0:
					t.Fatalf("append %d: %s asked for write-back up to %d", i, tc.policy, kicked)
				case tc.kicks && (kicked > size || size-kicked >= hintEvery+pageSize || kicked%pageSize != 0):
					t.Fatalf("append %d: %d bytes written, write-back asked up to %d: more than %d waiting, or not at a page boundary", i, size, kicked, hintEvery)
				}
			}
			if tc.kicks && active().kicked == 0 {
				t.Fatal("no write-back asked for 2.4 MB")
			}
			// A truncation below the point asked for: later appends still
			// ask from where the segment now ends.
			if err := l.TruncateFrom(1); err != nil {
				t.Fatal(err)
			}
			for range 4 {
				if _, err := l.Append(context.Background(), value); err != nil {
					t.Fatal(err)
				}
			}
			s := active()
			l.flushMu.Lock()
			defer l.flushMu.Unlock()
			if tc.kicks && (s.kicked > s.size || s.size-s.kicked >= hintEvery+pageSize) {
				t.Fatalf("after a truncation: %d bytes written, write-back asked up to %d", s.size, s.kicked)
			}
		})
	}
}
