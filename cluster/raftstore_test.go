package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/raftwal"
)

// testSegmentBytes keeps segments to a dozen entries, so compaction and
// truncation cross segment boundaries.
const testSegmentBytes = 1024

func openTestRaftStore(t *testing.T, dir string) *raftStore {
	t.Helper()
	s, err := openRaftStore(dir, raftStoreConfig(testSegmentBytes, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// raftBackend is where the raftStores of a test keep their entries: a
// log of their own, or the shared WAL (whose restart is a node restart).
type raftBackend struct {
	shared    bool
	preferOwn bool // new groups get logs of their own even with the WAL
	root      string
	wal       *raftwal.WAL
}

func (b *raftBackend) String() string {
	if b.shared {
		return "shared"
	}
	return "own"
}

// raftBackends returns one of each kind, for t.
func raftBackends(t *testing.T) []*raftBackend {
	t.Helper()
	return []*raftBackend{{}, {shared: true}}
}

// start makes the backend's directories (and WAL) under a temporary root.
func (b *raftBackend) start(t *testing.T) {
	t.Helper()
	b.root = t.TempDir()
	if b.shared {
		b.restart(t)
	}
}

// restart closes the WAL (its stores must be closed) and opens it again.
func (b *raftBackend) restart(t *testing.T) {
	t.Helper()
	if !b.shared {
		return
	}
	if b.wal != nil {
		if err := b.wal.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := raftwal.OpenWAL(raftwal.Config{Dir: filepath.Join(b.root, "wal"), Root: b.root, SegmentBytes: testSegmentBytes})
	if err != nil {
		t.Fatal(err)
	}
	b.wal = w
	t.Cleanup(func() { w.Close() })
}

// open opens the raftStore of group dir (under the root).
func (b *raftBackend) open(t *testing.T, group string) *raftStore {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(b.root, group), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := openRaftStoreIn(filepath.Join(b.root, group), raftStoreConfig(testSegmentBytes, nil), b.wal, b.preferOwn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testEntries(from, to, term uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: term, Type: raft.LogCommand,
			Data: []byte{byte(i), byte(term)}, AppendedAt: time.Unix(0, int64(i)*1000)})
	}
	return logs
}

func wantBounds(t *testing.T, s *raftStore, first, last uint64) {
	t.Helper()
	wantBoundsIn(t, s, first, first, last)
}

// wantBoundsIn accepts a first index in firstMin..firstMax: compaction
// deletes whole segments, so entries just below the compaction point may stay.
func wantBoundsIn(t *testing.T, s *raftStore, firstMin, firstMax, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil || f < firstMin || f > firstMax {
		t.Fatalf("FirstIndex = %d, %v; want %d..%d", f, err, firstMin, firstMax)
	}
	l, err := s.LastIndex()
	if err != nil || l != last {
		t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
	}
}

func wantEntry(t *testing.T, s *raftStore, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", want.Index, err)
	}
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
	}
}

// The sequence that broke raft-wal (hashicorp/raft-wal#31): a conflicting
// tail deleted and rewritten, then the store reopened, twice.
func TestRaftStoreTailRewriteSurvivesReopen(t *testing.T) {
	for _, b := range raftBackends(t) {
		t.Run(b.String(), func(t *testing.T) { testTailRewriteSurvivesReopen(t, b) })
	}
}

func testTailRewriteSurvivesReopen(t *testing.T, b *raftBackend) {
	b.start(t)
	s := b.open(t, "g")
	for round := range uint64(2) {
		if err := s.StoreLogs(testEntries(1+round*10, 10+round*10, round+1)); err != nil {
			t.Fatal(err)
		}
		last := 10 + round*10
		if err := s.DeleteRange(last-2, last); err != nil { // a new leader's conflicting suffix
			t.Fatal(err)
		}
		if err := s.StoreLogs(testEntries(last-2, last-2, round+2)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if round == 1 {
			b.restart(t)
		}
		s = b.open(t, "g")
		wantBounds(t, s, 1, last-2)
		wantEntry(t, s, testEntries(1, 1, 1)[0])
		wantEntry(t, s, testEntries(last-2, last-2, round+2)[0])
		var l raft.Log
		if err := s.GetLog(last, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(deleted %d) = %v, want ErrLogNotFound", last, err)
		}
		if err := s.StoreLogs(testEntries(last-1, last+10, round+2)); err != nil { // round 2 continues from here
			t.Fatal(err)
		}
	}
}

func TestRaftStore(t *testing.T) {
	tests := []struct {
		name        string
		store       [][2]uint64 // index ranges stored, in order
		del         [][2]uint64 // then deleted
		first, last uint64
		firstMin    uint64 // lowest acceptable first index, if below first
	}{
		{name: "empty", first: 0, last: 0},
		{name: "one", store: [][2]uint64{{1, 1}}, first: 1, last: 1},
		{name: "range", store: [][2]uint64{{1, 100}}, first: 1, last: 100},
		{name: "compacted head", store: [][2]uint64{{1, 100}}, del: [][2]uint64{{1, 60}}, firstMin: 45, first: 61, last: 100},
		{name: "conflicting tail rewritten", store: [][2]uint64{{1, 100}, {70, 80}}, first: 1, last: 80},
		{name: "restart past a gap", store: [][2]uint64{{1, 10}, {500, 520}}, first: 500, last: 520},
		{name: "everything then past it", store: [][2]uint64{{1, 10}, {500, 520}}, del: [][2]uint64{{500, 520}}, first: 0, last: 0},
		{name: "truncated tail", store: [][2]uint64{{1, 100}}, del: [][2]uint64{{90, 100}}, first: 1, last: 89},
		{name: "everything", store: [][2]uint64{{5, 9}}, del: [][2]uint64{{0, 1 << 62}}, first: 0, last: 0},
		{name: "range past the entries", store: [][2]uint64{{5, 9}}, del: [][2]uint64{{20, 30}}, first: 5, last: 9},
	}
	for _, b := range raftBackends(t) {
		for _, tt := range tests {
			t.Run(b.String()+"/"+tt.name, func(t *testing.T) {
				b.start(t)
				s := b.open(t, "g")
				for _, r := range tt.store {
					if err := s.StoreLogs(testEntries(r[0], r[1], 3)); err != nil {
						t.Fatal(err)
					}
				}
				for _, r := range tt.del {
					if err := s.DeleteRange(r[0], r[1]); err != nil {
						t.Fatal(err)
					}
				}
				firstMin := tt.first
				if tt.firstMin > 0 {
					firstMin = tt.firstMin
				}
				wantBoundsIn(t, s, firstMin, tt.first, tt.last)
				for _, restart := range []bool{false, true} {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					if restart {
						b.restart(t)
					}
					s = b.open(t, "g")
					wantBoundsIn(t, s, firstMin, tt.first, tt.last)
					if tt.first > 0 {
						wantEntry(t, s, testEntries(tt.first, tt.first, 3)[0])
						wantEntry(t, s, testEntries(tt.last, tt.last, 3)[0])
					}
				}
			})
		}
	}
}

func TestRaftStoreStable(t *testing.T) {
	path := t.TempDir()
	s := openTestRaftStore(t, path)
	// hashicorp/raft tells a missing key from a failure by this exact text.
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) = %v, want \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) = %v, want \"not found\"", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestRaftStore(t, path)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 = %d, %v; want 42", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("Get = %q, %v; want n2", v, err)
	}
	if err := s.Set([]byte("short"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("short")); !errors.Is(err, ErrCorruptEntry) {
		t.Fatalf("GetUint64(1 byte) = %v, want ErrCorruptEntry", err)
	}
}

func TestRaftStoreSecondOpenerFails(t *testing.T) {
	path := t.TempDir()
	openTestRaftStore(t, path)
	if s, err := openRaftStore(path, raftStoreConfig(testSegmentBytes, nil)); err == nil {
		s.Close()
		t.Fatal("a second open of a store in use succeeded")
	}
}

func FuzzDecodeRaftLog(f *testing.F) {
	for _, l := range append(testEntries(1, 3, 7), &raft.Log{}, &raft.Log{Index: 9, Extensions: []byte("ext"), Data: make([]byte, 300)}) {
		f.Add(encodeRaftLog(l))
	}
	f.Add([]byte{})
	f.Add(make([]byte, raftLogHeaderSize+4))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeRaftLog(b, &l); err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same bytes: nothing is invented
		// or dropped (zero time and empty slices round-trip as such).
		if got := encodeRaftLog(&l); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, decoded from %x", got, b)
		}
	})
}

func TestRaftStoreRefusesLegacyBolt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, legacyRaftDB), []byte("bolt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := openRaftStore(dir, raftStoreConfig(testSegmentBytes, nil)); !errors.Is(err, ErrOldRaftState) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open over a legacy raft.db = %v, want ErrOldRaftState", err)
	}
}

func TestRaftStoreStableDamage(t *testing.T) {
	tests := []struct {
		name    string
		damage  []int // slots to damage (1: the newest, 0: the older)
		want    uint64
		wantErr bool
	}{
		{name: "newest slot torn: the older one is read", damage: []int{1}, want: 7},
		{name: "older slot damaged: the newest is read", damage: []int{0}, want: 8},
		{name: "both damaged", damage: []int{0, 1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestRaftStore(t, dir)
			for _, v := range []uint64{7, 8} {
				if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
					t.Fatal(err)
				}
			}
			newest := int(s.stableSeq % 2)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, stableFileName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.damage {
				slot := newest
				if d == 0 {
					slot = 1 - newest
				}
				b[slot*stableSlotSize+stableSlotHeaderSize+20] ^= 1 // inside the body, under the CRC
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s2, err := openRaftStore(dir, raftStoreConfig(testSegmentBytes, nil))
			if tt.wantErr {
				if err == nil {
					s2.Close()
				}
				if !errors.Is(err, ErrCorruptEntry) {
					t.Fatalf("open with both slots damaged = %v, want ErrCorruptEntry", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if v, err := s2.GetUint64([]byte("CurrentTerm")); err != nil || v != tt.want {
				t.Fatalf("CurrentTerm = %d, %v; want %d", v, err, tt.want)
			}
			// The next Set goes to the slot not read, and wins on reopen.
			if err := s2.SetUint64([]byte("CurrentTerm"), 9); err != nil {
				t.Fatal(err)
			}
			s2.Close()
			s3 := openTestRaftStore(t, dir)
			if v, err := s3.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
				t.Fatalf("after another Set, CurrentTerm = %d, %v; want 9", v, err)
			}
		})
	}
}

// A stable file of format 1 (one record, replaced by rename) is converted
// on open and keeps its keys.
func TestRaftStoreStableConvertsFormat1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, stableFileName)
	old := encodeStable(map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 5}, "LastVoteCand": []byte("n3")})
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTestRaftStore(t, dir)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 5 {
		t.Fatalf("CurrentTerm = %d, %v; want 5", v, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 2*stableSlotSize {
		t.Fatalf("stable file after open: %v, %v; want %d bytes", fi, err, 2*stableSlotSize)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stable.tmp left behind: %v", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 6); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestRaftStore(t, dir)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 6 {
		t.Fatalf("CurrentTerm = %d, %v; want 6", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n3" {
		t.Fatalf("LastVoteCand = %q, %v; want n3", v, err)
	}
}

// Set never changes the stable file's size: it needs no new disk blocks.
func TestRaftStoreStableFixedSize(t *testing.T) {
	dir := t.TempDir()
	s := openTestRaftStore(t, dir)
	path := filepath.Join(dir, stableFileName)
	for i := range uint64(5) {
		if err := s.SetUint64([]byte("CurrentTerm"), i); err != nil {
			t.Fatal(err)
		}
		if err := s.Set([]byte("LastVoteCand"), bytes.Repeat([]byte("n"), int(i)*100)); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != 2*stableSlotSize {
			t.Fatalf("stable file: %v, %v; want %d bytes", fi, err, 2*stableSlotSize)
		}
	}
	if err := s.Set([]byte("huge"), make([]byte, stableSlotSize)); err == nil {
		t.Fatal("a value larger than a slot was accepted")
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 4 {
		t.Fatalf("CurrentTerm = %d, %v; want 4 (the refused Set changed nothing)", v, err)
	}
}

func FuzzDecodeStable(f *testing.F) {
	f.Add(encodeStable(map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 9}, "LastVoteCand": []byte("n2")}))
	f.Add(encodeStable(map[string][]byte{}))
	f.Add([]byte(stableMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStable(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		// Keys must be strictly increasing, so what decodes re-encodes to itself.
		if got := encodeStable(m); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, decoded from %x", got, b)
		}
	})
}

func FuzzDecodeStableFile(f *testing.F) {
	m := map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 9}, "LastVoteCand": []byte("n2")}
	a, err := encodeStableSlot(3, m)
	if err != nil {
		f.Fatal(err)
	}
	b, err := encodeStableSlot(4, map[string][]byte{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(slices.Clone(a), b...))
	f.Add(append(slices.Clone(a), make([]byte, stableSlotSize)...))
	f.Add(make([]byte, 2*stableSlotSize))
	f.Add(a[:100])
	f.Fuzz(func(t *testing.T, in []byte) {
		// Short inputs stand for slot 0's start: pad them to a whole file.
		file := make([]byte, 2*stableSlotSize)
		copy(file, in)
		seq, m, err := decodeStableFile(file)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		// What decodes is a slot that re-encodes to the same bytes: nothing
		// is invented or dropped.
		slot, err := encodeStableSlot(seq, m)
		if err != nil {
			t.Fatalf("decoded contents do not re-encode: %v", err)
		}
		n := stableSlotHeaderSize + int(binary.LittleEndian.Uint32(slot[16:]))
		if !bytes.Equal(file[:n], slot[:n]) && !bytes.Equal(file[stableSlotSize:stableSlotSize+n], slot[:n]) {
			t.Fatalf("seq %d %v decoded from a file that holds no such slot", seq, m)
		}
	})
}

// BenchmarkRaftStoreVerify measures the check New runs before raft starts:
// one sequential read of the entries after the latest snapshot.
func BenchmarkRaftStoreVerify(b *testing.B) {
	s, err := openRaftStore(b.TempDir(), raftStoreConfig(64<<20, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n, size = 10000, 4096
	data := make([]byte, size)
	for i := uint64(1); i <= n; i += 100 {
		var logs []*raft.Log
		for j := i; j < i+100; j++ {
			logs = append(logs, &raft.Log{Index: j, Term: 1, Type: raft.LogCommand, Data: data})
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n * size)
	for b.Loop() {
		if err := s.verify(1); err != nil {
			b.Fatal(err)
		}
	}
}

// A group whose Raft log of its own holds entries keeps it when the node
// has a shared WAL (data written before the WAL, or with
// --partition-raft-log own); a new group, or one whose own log is empty,
// keeps its entries in the WAL.
func TestRaftStoreKeepsItsOwnLog(t *testing.T) {
	own := &raftBackend{}
	own.start(t)
	s := own.open(t, "old")
	if err := s.StoreLogs(testEntries(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(own.root, "empty", raftLogDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	shared := &raftBackend{shared: true, root: own.root}
	shared.restart(t)
	s = shared.open(t, "old")
	wantBounds(t, s, 1, 20)
	wantEntry(t, s, testEntries(7, 7, 1)[0])
	if err := s.StoreLogs(testEntries(21, 30, 1)); err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{"new", "empty"} {
		n := shared.open(t, group)
		if err := n.StoreLogs(testEntries(1, 5, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(own.root, group, raftLogDirName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: a Raft log of its own exists (%v); want its entries in the WAL", group, err)
		}
		if n.logDir != shared.wal.Dir() {
			t.Fatalf("%s: entries in %s, want the WAL %s", group, n.logDir, shared.wal.Dir())
		}
	}
	if st := shared.wal.Stats(); st.Next-st.Lowest != 10 {
		t.Fatalf("the WAL holds %d records, want the two new groups' 5 entries each only", st.Next-st.Lowest)
	}
	s.Close()
	s = shared.open(t, "old")
	wantBounds(t, s, 1, 30)
}

// With preferOwn a new group gets a Raft log of its own, but a group whose
// entries the WAL holds keeps them there (a node restarted with
// --partition-raft-log own after running with shared).
func TestRaftStorePreferOwnKeepsWALGroups(t *testing.T) {
	b := &raftBackend{shared: true}
	b.start(t)
	s := b.open(t, "inwal")
	if err := s.StoreLogs(testEntries(1, 9, 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b.preferOwn = true
	s = b.open(t, "inwal")
	if s.logDir != b.wal.Dir() {
		t.Fatalf("a group the WAL holds moved to %s", s.logDir)
	}
	wantBounds(t, s, 1, 9)
	n := b.open(t, "new")
	if n.logDir != filepath.Join(b.root, "new", raftLogDirName) {
		t.Fatalf("a new group with preferOwn keeps its entries in %s", n.logDir)
	}
}
