package raftmux

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// request encodes a request frame as a dialer's writer does.
func request(typ byte, id uint64, group string, body any) []byte {
	var b bytes.Buffer
	var hdr [9]byte
	hdr[0] = typ
	binary.BigEndian.PutUint64(hdr[1:], id)
	b.Write(hdr[:])
	b.WriteByte(byte(len(group)))
	b.WriteString(group)
	codec.NewEncoder(&b, newMsgpack()).Encode(body)
	return b.Bytes()
}

// FuzzReadRequests: whatever a peer sends, the acceptor's reader returns
// an error or reads on; it never panics.
func FuzzReadRequests(f *testing.F) {
	f.Add(request(reqAppendEntries, 1, "g", &raft.AppendEntriesRequest{Term: 1, RPCHeader: raft.RPCHeader{Addr: []byte("x")}, Entries: []*raft.Log{{Index: 1, Term: 1, Data: []byte("d")}}}))
	f.Add(request(reqAppendEntries, 2, "g", &raft.AppendEntriesRequest{Term: 1, RPCHeader: raft.RPCHeader{Addr: []byte("x")}}))
	f.Add(request(reqRequestVote, 3, "other", &raft.RequestVoteRequest{Term: 2}))
	f.Add(request(reqRequestPreVote, 4, "g", &raft.RequestPreVoteRequest{Term: 2}))
	f.Add(request(reqTimeoutNow, 5, "g", &raft.TimeoutNowRequest{}))
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'g'})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := New(Config{
			Addr: "n1", Dial: func(raft.ServerAddress, Kind, time.Duration) (net.Conn, error) { return nil, net.ErrClosed },
			MaxQueued: 1 << 20, MaxQueuedBytes: 1 << 30, InboundQueue: 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		g, err := m.Transport("g")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		a, c := net.Pipe()
		defer a.Close()
		defer c.Close()
		w := newWriter(a, m.cfg) // never run: answers stay queued
		if err := m.readRequests(bytes.NewReader(b), w); err == nil {
			t.Fatal("readRequests returned no error at the end of its input")
		}
	})
}
