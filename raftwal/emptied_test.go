package raftwal

import (
	"bytes"
	"testing"
)

// TestReopenEmptiedLog: a log emptied by a truncation or a reset reopens
// empty, also once Compact has deleted the segments holding its records
// (another log's writes moved the WAL on). Its numbering is not kept
// (doc.go), so, as the cluster's StoreLogs does, the next append follows
// a Reset to the index Raft stores next, and reads back.
func TestReopenEmptiedLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		empty func(l *Log) error
		model func(m *model)
	}{
		{"Reset", func(l *Log) error { return l.Reset(100) }, func(m *model) { m.reset(100) }},
		{"TruncateBefore past next", func(l *Log) error { return l.TruncateBefore(50) }, func(m *model) { m.truncateBefore(50) }},
		{"TruncateFrom lowest", func(l *Log) error { return l.TruncateFrom(11) }, func(m *model) { m.truncateFrom(11) }},
	} {
		for _, compact := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: ", compacted"}[compact], func(t *testing.T) {
				const segmentBytes = 4096
				h := newTestWAL(t, 2, segmentBytes)
				ma, mb := newModel(), newModel()
				if err := h.logs[0].Reset(11); err != nil {
					t.Fatal(err)
				}
				ma.reset(11)
				mustAppend(t, h.logs[0], ma, []byte("a"), []byte("b"), []byte("c"))
				if err := tc.empty(h.logs[0]); err != nil {
					t.Fatal(err)
				}
				tc.model(ma)
				checkLog(t, "emptied log", h.logs[0], ma)
				if compact {
					// Another log writes about 10 segments and drops them.
					for range 40 {
						mustAppend(t, h.logs[1], mb, bytes.Repeat([]byte("x"), 1000))
						if err := h.logs[1].TruncateBefore(mb.next - 1); err != nil {
							t.Fatal(err)
						}
						mb.truncateBefore(mb.next - 1)
					}
					if err := h.w.Compact(); err != nil {
						t.Fatal(err)
					}
				}
				h.reopen()
				adoptEmptyNumbering(t, h.logs, []*model{ma, mb})
				checkLog(t, "emptied log after the reopen", h.logs[0], ma)
				checkLog(t, "other log after the reopen", h.logs[1], mb)
				if err := h.logs[0].Reset(200); err != nil {
					t.Fatal(err)
				}
				ma.reset(200)
				mustAppend(t, h.logs[0], ma, []byte("d"))
				h.reopen()
				checkLog(t, "emptied log after Reset, an append and a reopen", h.logs[0], ma)
			})
		}
	}
}
