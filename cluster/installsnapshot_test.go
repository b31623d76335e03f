package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestInstalledSnapshotThenResend drives a real hashicorp/raft follower on
// proglog's Raft log store through what a leader does when the connection
// drops around an InstallSnapshot (CI's TestGroupSnapshotOverMux failure):
// it installs a snapshot, stores the entry after it, gets that append again
// (the leader never heard back), and then the same snapshot again. Every
// RPC must succeed and the follower apply every entry after the snapshot.
// Before, the follower refused the resend (it read the snapshot's last
// entry from a log that no longer held it), the leader fell back to the
// snapshot, and after that install the follower refused every append:
// the group never caught up.
func TestInstalledSnapshotThenResend(t *testing.T) {
	store := openTestRaftStore(t, t.TempDir())
	snaps := raft.NewInmemSnapshotStore()
	var started atomic.Pointer[raft.Raft]
	store.snapshotted = newestApplied(snaps, &started)

	conf := raft.DefaultConfig()
	conf.LocalID = "follower"
	conf.TrailingLogs = 5
	conf.HeartbeatTimeout = time.Minute // no election: the test is the leader
	conf.ElectionTimeout = time.Minute
	conf.Logger = newHCLogger(slog.New(slog.DiscardHandler), "raft")
	_, followerTrans := raft.NewInmemTransport("follower")
	_, leaderTrans := raft.NewInmemTransport("leader")
	leaderTrans.Connect("follower", followerTrans)
	fsm := &indexFSM{}
	r, err := raft.NewRaft(conf, fsm, newLogCache(store, logCacheEntries, logCacheBytes), store, snaps, followerTrans)
	if err != nil {
		t.Fatal(err)
	}
	started.Store(r)
	t.Cleanup(func() { r.Shutdown().Error() })

	const snapIndex, term = 32, 2
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("leader"), Addr: []byte("leader")}
	voters := raft.Configuration{Servers: []raft.Server{
		{ID: "leader", Address: "leader"}, {ID: "follower", Address: "follower"}, {ID: "other", Address: "other"},
	}}
	install := func(step string) {
		t.Helper()
		state := binary.BigEndian.AppendUint64(nil, snapIndex)
		req := &raft.InstallSnapshotRequest{
			RPCHeader: header, SnapshotVersion: raft.SnapshotVersionMax, Term: term, Leader: []byte("leader"),
			LastLogIndex: snapIndex, LastLogTerm: term,
			Configuration: raft.EncodeConfiguration(voters), ConfigurationIndex: 1, Size: int64(len(state)),
		}
		var resp raft.InstallSnapshotResponse
		if err := leaderTrans.InstallSnapshot("follower", "follower", req, &resp, bytes.NewReader(state)); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if !resp.Success {
			t.Fatalf("%s: the follower refused the snapshot", step)
		}
	}
	appendAfterSnapshot := func(step string, last uint64) {
		t.Helper()
		req := &raft.AppendEntriesRequest{
			RPCHeader: header, Term: term, PrevLogEntry: snapIndex, PrevLogTerm: term, LeaderCommitIndex: last,
		}
		for i := uint64(snapIndex + 1); i <= last; i++ {
			req.Entries = append(req.Entries, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i)}})
		}
		var resp raft.AppendEntriesResponse
		if err := leaderTrans.AppendEntries("follower", "follower", req, &resp); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if !resp.Success {
			t.Fatalf("%s: the follower refused entries %d..%d after the snapshot (its last entry: %d)", step, snapIndex+1, last, resp.LastLog)
		}
	}
	waitApplied := func(step string, want []uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(fsm.applied(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the follower applied %v after the snapshot, want %v", step, fsm.applied(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	install("install")
	appendAfterSnapshot("the first append", snapIndex+1)
	waitApplied("the first append", []uint64{33})
	appendAfterSnapshot("the same append again", snapIndex+1)
	install("the same snapshot again")
	waitApplied("the snapshot again", nil)
	appendAfterSnapshot("the appends after the second install", snapIndex+2)
	waitApplied("the appends after the second install", []uint64{33, 34})
}

// indexFSM remembers the indexes of the commands applied since the last
// restore; a snapshot holds the index it was taken at.
type indexFSM struct {
	mu    sync.Mutex
	after []uint64
}

func (f *indexFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = append(f.after, l.Index)
	return nil
}

func (f *indexFSM) applied() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.after)
}

func (f *indexFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errNoSnapshots }

func (f *indexFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if _, err := io.ReadAll(rc); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = nil
	return nil
}

var errNoSnapshots = errors.New("indexFSM takes no snapshots")
