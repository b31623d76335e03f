package raftmux

import (
	"net"
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
	b, tb := groupOn(t, "b", func(raft.ServerAddress, Kind, time.Duration) (net.Conn, error) { return nil, net.ErrClosed })
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-stopped }()
	go func() {
		defer close(stopped)
		for {
			select {
			case rpc := <-tb.Consumer():
				rpc.Respond(&raft.RequestVoteResponse{Term: 7, Granted: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	a, ta := groupOn(t, "a", func(_ raft.ServerAddress, kind Kind, _ time.Duration) (net.Conn, error) {
		x, y := net.Pipe()
		go b.Serve(y, kind)
		return x, nil
	})

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

// groupOn starts a Mux at addr with dial and its transport for group "g";
// both close when the test ends.
func groupOn(t *testing.T, addr raft.ServerAddress, dial func(raft.ServerAddress, Kind, time.Duration) (net.Conn, error)) (*Mux, *Transport) {
	t.Helper()
	m, err := New(Config{Addr: addr, Dial: dial})
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
