package raftwal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestReplayLargeEntries: replay reads only the heads of large records
// (logstore.ReadHeads), trusting their header checksums, and a reopened
// WAL holds the same logs as before, large entries and small interleaved.
func TestReplayLargeEntries(t *testing.T) {
	h := newTestWAL(t, 2, 1<<20)
	models := []*model{newModel(), newModel()}
	for i := range 40 {
		size := 100
		if i%3 == 0 {
			size = 48 << 10
		}
		v := bytes.Repeat([]byte{byte(i)}, size)
		mustAppend(t, h.logs[i%2], models[i%2], v, v[:size/2])
	}
	if err := h.logs[0].TruncateFrom(30); err != nil {
		t.Fatal(err)
	}
	models[0].truncateFrom(30)
	h.reopen()
	checkAllLogs(t, "after reopen", h.logs, models)
}

// TestReplayDamagedHeader: a flipped bit in the header of a large record
// in a sealed segment, which replay does not read whole, is refused by
// the header's checksum instead of giving the entry to another log.
func TestReplayDamagedHeader(t *testing.T) {
	h := newTestWAL(t, 1, 256<<10)
	m := newModel()
	big := bytes.Repeat([]byte("x"), 64<<10)
	for range 10 {
		mustAppend(t, h.logs[0], m, big)
	}
	h.close()
	name := filepath.Join(h.cfg.Dir, "00000000000000000000.store")
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte("group-0")) // the first record's name
	if at < 0 {
		t.Fatal("no record names group-0")
	}
	b[at+len("group-")] ^= 0x01 // group-1
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if w, err := OpenWAL(h.cfg); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			w.Close()
		}
		t.Fatalf("OpenWAL with a damaged header: %v, want ErrCorrupt", err)
	}
	h.w, h.logs = nil, nil
}

// TestReplayEarlierFormat: a WAL written before records carried a header
// checksum replays as before (its large records read whole, their frame
// CRC checked), and new records go on after them.
func TestReplayEarlierFormat(t *testing.T) {
	h := newTestWAL(t, 1, 1<<20)
	k, err := h.w.keyOf(h.dirs[0], readIncarnation)
	if err != nil {
		t.Fatal(err)
	}
	h.close()
	phys, err := logstore.Open(h.cfg.Dir, h.cfg.storeConfig())
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	var recs [][]byte
	for i := range uint64(6) {
		v := bytes.Repeat([]byte{byte(i)}, 100+int(i%2)*(40<<10))
		b := []byte{kindEntry}
		b = binary.AppendUvarint(b, uint64(len(k.name)))
		b = append(b, k.name...)
		b = binary.LittleEndian.AppendUint64(b, k.inc)
		b = binary.AppendUvarint(b, i)
		recs = append(recs, append(b, v...))
		m.append([][]byte{v})
	}
	if _, err := phys.AppendBatch(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := phys.Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	checkLog(t, "earlier format", h.logs[0], m)
	mustAppend(t, h.logs[0], m, []byte("new"))
	h.reopen()
	checkLog(t, "earlier format, then a new record", h.logs[0], m)
}
