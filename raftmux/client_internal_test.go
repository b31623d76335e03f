package raftmux

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A connection whose reader failed before the dial made it the peer's
// connection (the peer hung up at once: a node being isolated, or
// restarting) is not used again: the next requests dial anew. Before, its
// error answered every request to that peer until the Mux closed.
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

	// The race lost, made by hand: the reader of a connection to b fails
	// at once, and only then does the connection become b's.
	p := &peer{addr: "b"}
	a.mu.Lock()
	a.peers["b"] = p
	a.mu.Unlock()
	x, y := net.Pipe()
	y.Close()
	c := a.startClient(p, x)
	failed := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err != nil
	}
	for deadline := time.Now().Add(5 * time.Second); !failed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reader of a hung-up connection did not fail")
		}
	}
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()

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
