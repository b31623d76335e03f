package raftmux

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A connection whose reader failed before its dial ended (the peer hung
// up at once: a node being isolated, or restarting) does not become the
// peer's connection: the dial counts as failed, and after its backoff the
// next request dials anew. Before, it was kept, and its error answered
// every request to that peer until the Mux closed.
func TestFailedConnectionDropped(t *testing.T) {
	b := grantingPeer(t)
	a, ta := groupOn(t, Config{Addr: "a", Dial: func(_ raft.ServerAddress, kind Kind, _ time.Duration) (net.Conn, error) {
		x, y := net.Pipe()
		go b.Serve(y, kind)
		return x, nil
	}})

	// The race lost, made by hand: a dial to b returns a connection whose
	// reader fails before the dial ends.
	p := &peer{addr: "b", dialing: make(chan struct{})}
	a.mu.Lock()
	a.peers["b"] = p
	a.mu.Unlock()
	x, y := net.Pipe()
	y.Close()
	c := a.startClient(p, x)
	for deadline := time.Now().Add(5 * time.Second); c.failed() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reader of a hung-up connection did not fail")
		}
	}
	if got, err := p.dialed(c, nil); err == nil || got != nil {
		t.Fatalf("the dial of a failed connection ended with %v, %v; want an error", got, err)
	}

	var resp raft.RequestVoteResponse
	for try := 0; ; try++ {
		err := ta.RequestVote("b", "b", &raft.RequestVoteRequest{Term: 1}, &resp)
		if err == nil {
			break
		}
		if try == 100 { // 2 s; the backoff after one unanswered connection is 50 ms
			t.Fatalf("requests still fail: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.Term != 7 || !resp.Granted {
		t.Fatalf("answer %+v", resp)
	}
}

// A connection's fail sets its error and drops it as the peer's
// connection in one step under the peer's lock: Mux.conn, which hands out
// the peer's connection under that lock, never sees one that has failed,
// and the next request gets a new connection at once (no backoff: the
// failed one had answered).
func TestFailedConnectionNeverHandedOut(t *testing.T) {
	b := grantingPeer(t)
	var dials atomic.Int32
	a, ta := groupOn(t, Config{Addr: "a", Dial: func(_ raft.ServerAddress, kind Kind, _ time.Duration) (net.Conn, error) {
		dials.Add(1)
		x, y := net.Pipe()
		go b.Serve(y, kind)
		return x, nil
	}})
	var resp raft.RequestVoteResponse
	if err := ta.RequestVote("b", "b", &raft.RequestVoteRequest{Term: 1}, &resp); err != nil {
		t.Fatal(err)
	}
	c, err := a.conn("b")
	if err != nil {
		t.Fatal(err)
	}

	// While the peer's lock is held (as conn holds it), a fail sets
	// nothing that the lock's holder could see half done.
	p := c.peer
	p.mu.Lock()
	failed := make(chan struct{})
	go func() {
		defer close(failed)
		c.fail(errors.New("lost, by the test"))
	}()
	time.Sleep(50 * time.Millisecond)
	if p.conn == c && c.failed() != nil {
		p.mu.Unlock()
		<-failed
		t.Fatal("the peer's connection has failed but is still the peer's connection")
	}
	p.mu.Unlock()
	<-failed
	p.mu.Lock()
	still := p.conn == c
	p.mu.Unlock()
	if still || c.failed() == nil {
		t.Fatalf("after fail: still the peer's connection %v, error %v", still, c.failed())
	}

	got, err := a.conn("b")
	if err != nil {
		t.Fatal(err)
	}
	if got == c {
		t.Fatal("a failed connection was handed out")
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
	if err := ta.RequestVote("b", "b", &raft.RequestVoteRequest{Term: 1}, &resp); err != nil {
		t.Fatalf("request after the failed connection: %v", err)
	}
}

// grantingPeer starts node "b", whose group "g" grants every vote (term
// 7).
func grantingPeer(t *testing.T) *Mux {
	t.Helper()
	b, _ := peerB(t, func(rpc raft.RPC) { rpc.Respond(&raft.RequestVoteResponse{Term: 7, Granted: true}, nil) })
	return b
}

// peerB starts node "b", a Mux that dials no one, and hands every RPC its
// group "g" receives to handle until the test ends.
func peerB(t *testing.T, handle func(raft.RPC)) (*Mux, *Transport) {
	t.Helper()
	b, tb := groupOn(t, Config{Addr: "b", Dial: func(raft.ServerAddress, Kind, time.Duration) (net.Conn, error) { return nil, net.ErrClosed }})
	stop, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case rpc := <-tb.Consumer():
				handle(rpc)
			case <-stop:
				return
			}
		}
	}()
	return b, tb
}

// groupOn starts a Mux with cfg and its transport for group "g"; both
// close when the test ends.
func groupOn(t *testing.T, cfg Config) (*Mux, *Transport) {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	g, err := m.Transport("g")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return m, g
}

// When the connection under a pipeline fails, the pipeline dials again and
// resends, in order, the requests not answered on it; raft sees only
// their answers. (hashicorp/raft resends a failed AppendEntries only at its
// next CommitTimeout tick or new entry: 2 s for proglog's partitions.) A
// request answered before the failure is not resent, a request made after
// it goes out on a new connection, a failed dial is tried again, and raft
// sees the failure once it has failed to dial for Config.Timeout.
func TestPipelineResendsAfterConnectionLoss(t *testing.T) {
	l := linked(t)
	ta, tb, got, conns := l.a, l.b, l.got, l.conns
	pl, err := ta.AppendEntriesPipeline("b", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	dialed := func() net.Conn { // a's end of the next connection a dials
		t.Helper()
		select {
		case c := <-conns:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("a did not dial b again")
			return nil
		}
	}
	conn := dialed()

	// sending sends the request for index; its AppendEntries returns once
	// fewer than two (Config.MaxInFlight's default) are in flight.
	sending := func(index uint64) <-chan error {
		errc := make(chan error, 1)
		req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: index - 1, Entries: []*raft.Log{{Index: index, Term: 1}}}
		go func() {
			_, err := pl.AppendEntries(req, new(raft.AppendEntriesResponse))
			errc <- err
		}()
		return errc
	}
	returned := func(index uint64, errc <-chan error) {
		t.Helper()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("AppendEntries %d: %v", index, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("AppendEntries %d did not return", index)
		}
	}
	send := func(index uint64) { t.Helper(); returned(index, sending(index)) }
	// receive takes the next request b got, which must be for index, and
	// answers it unless told not to.
	receive := func(index uint64, answer bool) raft.RPC {
		t.Helper()
		select {
		case rpc := <-got:
			req := rpc.Command.(*raft.AppendEntriesRequest)
			if n := req.Entries[0].Index; n != index {
				t.Fatalf("b got the request for entry %d, want %d", n, index)
			}
			if answer {
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: index, Success: true}, nil)
			}
			return rpc
		case <-time.After(10 * time.Second):
			t.Fatalf("b got no request for entry %d", index)
		}
		return raft.RPC{}
	}
	// answered takes the next future raft would read, which must be for
	// index, and checks its outcome.
	answered := func(index uint64, success bool) {
		t.Helper()
		select {
		case f := <-pl.Consumer():
			if n := f.Request().Entries[0].Index; n != index {
				t.Fatalf("raft got the answer to entry %d, want %d", n, index)
			}
			if f.Response().Success != success {
				t.Fatalf("entry %d: success %v (error %v), want %v", index, f.Response().Success, f.Error(), success)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("raft got no answer for entry %d", index)
		}
	}

	// b's raft handles one request at a time.
	send(1)
	sent2 := sending(2)
	receive(1, true)
	answered(1, true)
	returned(2, sent2)
	sent3 := sending(3)
	late := receive(2, false)
	for len(tb.inbound) == 0 { // until b has read 3 as well
		time.Sleep(time.Millisecond)
	}
	conn.Close() // 2 and 3 in flight, unanswered
	conn = dialed()
	late.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 2, Success: true}, nil) // into the closed connection
	receive(3, true)                                                                   // the same, read before the close
	receive(2, true)                                                                   // resent
	receive(3, true)
	answered(2, true)
	returned(3, sent3)
	answered(3, true)

	conn.Close() // nothing in flight: the next request dials
	for {        // until a's reader has seen the failure
		a := ta.m
		a.mu.Lock()
		p := a.peers["b"]
		a.mu.Unlock()
		p.mu.Lock()
		gone := p.conn == nil
		p.mu.Unlock()
		if gone {
			break
		}
		time.Sleep(time.Millisecond)
	}
	send(4)
	conn = dialed()
	receive(4, true)
	answered(4, true)

	send(5)
	late = receive(5, false)
	l.refuse.Store(1)
	conn.Close()
	late.Respond(&raft.AppendEntriesResponse{}, nil)
	conn = dialed() // after the refused dial's backoff
	receive(5, true)
	answered(5, true)

	send(6)
	late = receive(6, false)
	l.refuse.Store(-1)
	conn.Close()
	late.Respond(&raft.AppendEntriesResponse{}, nil)
	answered(6, false) // every dial failed for a Timeout: raft sees it
	select {
	case rpc := <-got:
		t.Fatalf("b got %+v after the dial failed", rpc.Command)
	default:
	}
}

// An AppendEntries outside a pipeline whose connection fails before the
// answer is sent again on a new connection.
func TestAppendEntriesSentAgain(t *testing.T) {
	l := linked(t)
	ta, got, conns := l.a, l.got, l.conns
	// A connection that ended before any answer came back on it is
	// followed by a backoff; this one has had an answer.
	go func() { rpc := <-got; rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil) }()
	var resp raft.AppendEntriesResponse
	if err := ta.AppendEntries("b", "b", &raft.AppendEntriesRequest{Term: 1}, &resp); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		req := &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1}}}
		errc <- ta.AppendEntries("b", "b", req, &resp)
	}()
	first := <-got
	(<-conns).Close()
	first.Respond(&raft.AppendEntriesResponse{}, nil) // into the closed connection
	select {
	case again := <-got:
		again.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 1, Success: true}, nil)
	case <-time.After(10 * time.Second):
		t.Fatal("the request was not sent again")
	}
	if err := <-errc; err != nil || !resp.Success {
		t.Fatalf("AppendEntries: %v, %+v", err, resp)
	}
}

// link is group "g" on two Muxes, where a dials b through net.Pipe and
// b's raft is the test.
type link struct {
	a, b   *Transport
	got    chan raft.RPC // every request b gets
	conns  chan net.Conn // a's end of each connection a dials
	refuse atomic.Int32  // while positive, a's dials fail and count it down; at -1 all fail
}

// linked starts a link; a's Timeout is a second.
func linked(t *testing.T) *link {
	t.Helper()
	l := &link{got: make(chan raft.RPC, 16), conns: make(chan net.Conn, 16)}
	var b *Mux
	b, l.b = peerB(t, func(rpc raft.RPC) { l.got <- rpc })
	_, l.a = groupOn(t, Config{Addr: "a", Timeout: time.Second, Dial: func(_ raft.ServerAddress, kind Kind, _ time.Duration) (net.Conn, error) {
		if n := l.refuse.Load(); n < 0 || n > 0 && l.refuse.CompareAndSwap(n, n-1) {
			return nil, errors.New("refused by the test")
		}
		x, y := net.Pipe()
		go b.Serve(y, kind)
		l.conns <- x
		return x, nil
	}})
	return l
}
