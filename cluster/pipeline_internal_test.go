package cluster

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/raftmux"
)

// TestPipelineSendsAfterRaftStopsReading is the wedge described on
// transport, as a paused follower met it (TestTopicsPausedNodeUnderLoad):
// the follower refuses an entry, raft's reader takes that answer and
// stops, and raft's sender sends a few more before it notices. Every one
// of those sends must return, and then Close, on both transports.
func TestPipelineSendsAfterRaftStopsReading(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(t *testing.T) (leader, follower fullTransport)
	}{
		{"NetworkTransport", tcpTransports},
		{"raftmux", muxTransports},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leader, follower := tc.pair(t)
			stopFollower := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() { // a follower whose log lacks every previous entry
				for {
					select {
					case rpc := <-follower.Consumer():
						rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: false}, nil)
					case <-stopFollower:
						return
					}
				}
			})
			defer func() { close(stopFollower); wg.Wait() }()

			p, err := newTransport(leader).AppendEntriesPipeline("f", follower.LocalAddr())
			if err != nil {
				t.Fatal(err)
			}
			send := func(index uint64) {
				t.Helper()
				req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: index - 1, PrevLogTerm: 1,
					Entries: []*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}}
				errc := make(chan error, 1)
				go func() {
					_, err := p.AppendEntries(req, new(raft.AppendEntriesResponse))
					errc <- err
				}()
				select {
				case err := <-errc:
					if err != nil {
						t.Fatalf("AppendEntries %d: %v", index, err)
					}
				case <-time.After(5 * time.Second):
					p.Close() // releases the send
					<-errc
					t.Fatalf("AppendEntries %d did not return: the pipeline waits for raft to read an answer it will never read", index)
				}
			}

			send(1)
			select {
			case f := <-p.Consumer():
				if f.Response().Success {
					t.Fatal("the follower refused the entry; the answer says it took it")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no answer to the first request")
			}
			// raft's reader has stopped; its sender goes on for a while.
			for i := uint64(2); i <= 8; i++ {
				send(i)
			}
			closed := make(chan error, 1)
			go func() { closed <- p.Close() }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
		})
	}
}

// tcpTransports is two NetworkTransports over TCP on loopback, as
// TransportStream gives a group (and the system group always has).
func tcpTransports(t *testing.T) (fullTransport, fullTransport) {
	t.Helper()
	open := func() *raft.NetworkTransport {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	return open(), open()
}

// muxTransports is one group's raftmux Transports on two Muxes that reach
// each other over TCP on loopback, as TransportMux gives a group.
func muxTransports(t *testing.T) (fullTransport, fullTransport) {
	t.Helper()
	group := func(m *raftmux.Mux) *raftmux.Transport {
		tr, err := m.Transport("g")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	return group(startMux(t)), group(startMux(t))
}

// startMux starts a Mux on a loopback listener; a connection's first byte
// is its raftmux.Kind (the node's preamble, cut to what the Mux needs).
func startMux(t *testing.T) *raftmux.Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := raftmux.New(raftmux.Config{
		Addr: raft.ServerAddress(ln.Addr().String()),
		Dial: func(addr raft.ServerAddress, kind raftmux.Kind, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", string(addr), timeout)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write([]byte{byte(kind)}); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				var kind [1]byte
				if _, err := io.ReadFull(c, kind[:]); err != nil {
					c.Close()
					return
				}
				m.Serve(c, raftmux.Kind(kind[0]))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		m.Close()
		wg.Wait()
	})
	return m
}
