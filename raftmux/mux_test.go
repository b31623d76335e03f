package raftmux_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/raftmux"
)

// Many groups on three nodes elect leaders and replicate, and each node
// dials each peer once for all of them.
func TestManyGroups(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	const groups = 30
	all := make([][]*replica, groups)
	for g := range groups {
		all[g] = startGroup(t, fmt.Sprintf("g%d", g), nodes)
	}
	var wg sync.WaitGroup
	for g := range groups {
		wg.Go(func() { apply(t, all[g], fmt.Sprintf("g%d", g), 20) })
	}
	wg.Wait()
	for g := range groups {
		converge(t, all[g], 20)
	}
	for i, n := range nodes {
		if d := n.rpcDials(); d != 2 {
			t.Errorf("node %d dialed %d RPC connections for %d groups, want 2 (one per peer)", i+1, d, groups)
		}
	}
}

// Cutting every connection of a node fails what is in flight, and the
// groups carry on over new connections.
func TestConnectionCut(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	const groups = 5
	all := make([][]*replica, groups)
	for g := range groups {
		all[g] = startGroup(t, fmt.Sprintf("g%d", g), nodes)
	}
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cutter.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				nodes[0].cut()
			}
		}
	})
	var wg sync.WaitGroup
	for g := range groups {
		wg.Go(func() { apply(t, all[g], fmt.Sprintf("g%d", g), 30) })
	}
	wg.Wait()
	close(stop)
	cutter.Wait()
	for g := range groups {
		converge(t, all[g], 30)
	}
}

// A request in flight fails as soon as its connection is cut, not after
// the timeout.
func TestCutFailsInFlight(t *testing.T) {
	nodes := startNodes(t, 2, raftmux.Config{Timeout: 30 * time.Second})
	a, err := nodes[0].mux.Transport("g")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := nodes[1].mux.Transport("g")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan raft.RPC, 1)
	go func() { got <- <-b.Consumer() }() // takes the request, never answers
	errc := make(chan error, 1)
	go func() {
		var resp raft.RequestVoteResponse
		errc <- a.RequestVote("b", raft.ServerAddress(nodes[1].addr), &raft.RequestVoteRequest{Term: 1}, &resp)
	}()
	first := <-got
	start := time.Now()
	nodes[0].cut()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the call in flight succeeded")
		}
		t.Logf("failed after %v: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight did not fail when its connection was cut")
	}
	// Raft answers late, on a connection that is gone; the next call
	// dials again and is answered.
	first.Respond(&raft.RequestVoteResponse{}, nil)
	go func() {
		rpc := <-b.Consumer()
		rpc.Respond(&raft.RequestVoteResponse{Term: 7, Granted: true}, nil)
	}()
	// Nothing was answered on the cut connection, so the peer is dialed
	// again only after a backoff (50 ms): calls fail at once until then.
	var resp raft.RequestVoteResponse
	for try := 0; ; try++ {
		err := a.RequestVote("b", raft.ServerAddress(nodes[1].addr), &raft.RequestVoteRequest{Term: 1}, &resp)
		if err == nil {
			break
		}
		if try == 100 {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if resp.Term != 7 || !resp.Granted {
		t.Fatalf("answer %+v", resp)
	}
}

// Closing a group fails its own calls in flight and answers its peers'
// requests with an error; other groups on the same connections go on.
func TestGroupClose(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	a := startGroup(t, "a", nodes)
	b := startGroup(t, "b", nodes)
	apply(t, a, "a", 5)
	apply(t, b, "b", 5)

	// Close group a on every node but its leader's; b goes on.
	la := leader(t, a)
	for _, r := range a {
		if r != la {
			r.stop(t)
		}
	}
	apply(t, b, "b2", 10)
	converge(t, b, 15)

	// A request of a closed group in flight fails at once.
	x, err := nodes[0].mux.Transport("x")
	if err != nil {
		t.Fatal(err)
	}
	y, err := nodes[1].mux.Transport("x")
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	got := make(chan raft.RPC, 1)
	go func() { got <- <-y.Consumer() }()
	errc := make(chan error, 1)
	go func() {
		var resp raft.RequestVoteResponse
		errc <- x.RequestVote("y", raft.ServerAddress(nodes[1].addr), &raft.RequestVoteRequest{Term: 1}, &resp)
	}()
	<-got
	x.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, raft.ErrTransportShutdown) {
			t.Fatalf("call of a closed group: %v, want ErrTransportShutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the group did not fail its call in flight")
	}
	// A request for a group a peer does not run is answered with an error.
	var resp raft.RequestVoteResponse
	err = y.RequestVote("x", raft.ServerAddress(nodes[0].addr), &raft.RequestVoteRequest{Term: 1}, &resp)
	if err == nil {
		t.Fatal("a request for a group the peer does not run succeeded")
	}
	t.Log(err)
	apply(t, b, "b3", 5)
	converge(t, b, 20)
}

// A follower that missed compacted entries gets a snapshot of a few MiB
// over the mux while other groups keep heartbeating and replicating.
func TestSnapshotInstall(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	small := func(rc *raft.Config, f *fsm) {
		rc.SnapshotThreshold = 20
		rc.SnapshotInterval = 50 * time.Millisecond
		rc.TrailingLogs = 5
		f.pad = 8 << 20
	}
	others := make([][]*replica, 5)
	for g := range others {
		others[g] = startGroup(t, fmt.Sprintf("o%d", g), nodes)
	}
	// s runs on n1 and n2 first; n3 joins once they have compacted.
	var s []*replica
	for _, n := range nodes[:2] {
		s = append(s, startReplica(t, n, "s", nodes, small))
	}
	apply(t, s, "s", 100)
	l := leader(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if snaps, _ := l.raft.Stats()["last_snapshot_index"]; snaps != "0" && snaps != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader took no snapshot")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for g := range others {
		bg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				apply(t, others[g], fmt.Sprintf("o%d-%d", g, i), 1)
			}
		})
	}
	s = append(s, startReplica(t, nodes[2], "s", nodes, small))
	converge(t, s, 100)
	close(stop)
	bg.Wait()
	if got := s[2].raft.Stats()["last_snapshot_index"]; got == "0" {
		t.Errorf("n3 applied without a snapshot (last_snapshot_index %s)", got)
	}
}

// Closing the Mux ends everything it started (goleak checks in TestMain).
func TestCloseMux(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	reps := startGroup(t, "g", nodes)
	apply(t, reps, "g", 5)
	for _, r := range reps {
		r.stop(t)
	}
	for _, n := range nodes {
		n.mux.Close()
	}
	if _, err := nodes[0].mux.Transport("h"); !errors.Is(err, raftmux.ErrClosed) {
		t.Fatalf("Transport on a closed Mux: %v", err)
	}
}

// With commit pushes a follower applies an entry moments after the
// leader, though raft's own CommitTimeout ticks come seconds apart.
func TestCommitPush(t *testing.T) {
	nodes := startNodes(t, 3, raftmux.Config{})
	reps := startGroup(t, "g", nodes, func(rc *raft.Config, _ *fsm) { rc.CommitTimeout = 10 * time.Second })
	apply(t, reps, "warm", 1)
	converge(t, reps, 1)
	for i := range 5 {
		l := leader(t, reps)
		start := time.Now()
		if err := l.raft.Apply([]byte(fmt.Sprint("x", i)), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
		converge(t, reps, 2+i)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("followers applied entry %d %v after the leader proposed it; CommitTimeout is 10 s, so the push did not come", i, d)
		} else {
			t.Logf("entry %d on every replica after %v", i, d)
		}
	}
}

// Commit pushes under a hostile network: with writes slowed by random
// delays, connections cut and leadership moved at random while entries
// are applied (pushes then arrive late, after a new term, or not at all),
// every replica ends up having applied exactly the same entries in the
// same order, and a follower's commit index only ever comes from a push or
// from raft (CommitTimeout is longer than the test). An entry applied on
// one replica only, or out of order, fails it. (A stale uncommitted tail
// on a follower, the case min(commit, match) guards, needs crashes as
// well and is argued in commit.go, not produced here.)
func TestCommitPushUnderFaults(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	nodes := startNodes(t, 3, raftmux.Config{})
	// A CommitTimeout longer than the test: followers learn the commit
	// index from the next entry's AppendEntries or from a push.
	reps := startGroup(t, "g", nodes, func(rc *raft.Config, _ *fsm) { rc.CommitTimeout = time.Minute })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var applied atomic.Int64
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, r := range reps {
					if r.raft.State() == raft.Leader {
						if r.raft.Apply(fmt.Appendf(nil, "w%d-%d", w, i), 300*time.Millisecond).Error() == nil {
							applied.Add(1)
						}
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	faults := map[string]int{}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		time.Sleep(time.Duration(10+rng.IntN(90)) * time.Millisecond)
		switch rng.IntN(4) {
		case 0:
			nodes[rng.IntN(len(nodes))].cut()
			faults["cut"]++
		case 1:
			for _, n := range nodes {
				n.delay.Store(int64(rng.IntN(30)) * int64(time.Millisecond))
			}
			faults["delays"]++
		case 2:
			for _, r := range reps {
				if r.raft.State() == raft.Leader {
					_ = r.raft.LeadershipTransfer() // not waited for: faults go on meanwhile
					faults["transfer"]++
				}
			}
		case 3:
			n := nodes[rng.IntN(len(nodes))]
			n.delay.Store(int64(50 * time.Millisecond))
			faults["slow node"]++
		}
	}
	close(stop)
	wg.Wait()
	for _, n := range nodes {
		n.delay.Store(0)
	}
	t.Logf("faults %v; %d entries acknowledged", faults, applied.Load())
	if applied.Load() == 0 {
		t.Fatal("no entry was acknowledged under the faults: the test proves nothing")
	}

	apply(t, reps, "after", 1)
	want := 0
	for _, r := range reps {
		want = max(want, r.fsm.count())
	}
	converge(t, reps, want)
	first := reps[0].fsm
	first.mu.Lock()
	defer first.mu.Unlock()
	for i, r := range reps[1:] {
		r.fsm.mu.Lock()
		got := slices.Clone(r.fsm.data)
		r.fsm.mu.Unlock()
		if len(got) != len(first.data) {
			t.Fatalf("replica %d applied %d entries, replica 1 %d", i+2, len(got), len(first.data))
		}
		for j := range got {
			if !bytes.Equal(got[j], first.data[j]) {
				t.Fatalf("entry %d: replica %d applied %q, replica 1 %q", j+1, i+2, got[j], first.data[j])
			}
		}
	}
}
