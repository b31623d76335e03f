package cluster

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTestRaftStore(t *testing.T, path string) *raftStore {
	t.Helper()
	s, err := openRaftStore(path)
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
	f, err := s.FirstIndex()
	if err != nil || f != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
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
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestRaftStore(t, path)
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
		s = openTestRaftStore(t, path)
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
	}{
		{name: "empty", first: 0, last: 0},
		{name: "one", store: [][2]uint64{{1, 1}}, first: 1, last: 1},
		{name: "range", store: [][2]uint64{{1, 100}}, first: 1, last: 100},
		{name: "compacted head", store: [][2]uint64{{1, 100}}, del: [][2]uint64{{1, 60}}, first: 61, last: 100},
		{name: "truncated tail", store: [][2]uint64{{1, 100}}, del: [][2]uint64{{90, 100}}, first: 1, last: 89},
		{name: "everything", store: [][2]uint64{{5, 9}}, del: [][2]uint64{{0, 1 << 62}}, first: 0, last: 0},
		{name: "range past the entries", store: [][2]uint64{{5, 9}}, del: [][2]uint64{{20, 30}}, first: 5, last: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "raft.db")
			s := openTestRaftStore(t, path)
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
			wantBounds(t, s, tt.first, tt.last)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestRaftStore(t, path)
			wantBounds(t, s, tt.first, tt.last)
			if tt.first > 0 {
				wantEntry(t, s, testEntries(tt.first, tt.first, 3)[0])
				wantEntry(t, s, testEntries(tt.last, tt.last, 3)[0])
			}
		})
	}
}

func TestRaftStoreStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
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
	path := filepath.Join(t.TempDir(), "raft.db")
	openTestRaftStore(t, path)
	if s, err := openRaftStore(path); err == nil {
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
