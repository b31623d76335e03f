package raftmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// serveRPC reads a peer's requests from conn and hands them to their
// groups; the answers go back through conn's writer. It returns when
// conn fails or is closed.
func (m *Mux) serveRPC(conn net.Conn) {
	w := newWriter(conn, m.cfg)
	if !m.goTracked(w.run) {
		return
	}
	err := m.readRequests(conn, w)
	w.fail(err)
	select {
	case <-m.done:
	default:
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			m.cfg.Logger.Debug("raftmux: inbound connection ended", "remote", conn.RemoteAddr().String(), "error", err)
		}
	}
}

// readRequests decodes requests from conn until it fails; it never panics
// on what it reads (FuzzReadRequests).
func (m *Mux) readRequests(conn io.Reader, w *writer) error {
	r := bufio.NewReaderSize(conn, bufSize)
	dec := codec.NewDecoder(r, newMsgpack())
	var hdr [10]byte
	var name [255]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		typ, id, n := hdr[0], binary.BigEndian.Uint64(hdr[1:9]), int(hdr[9])
		if n == 0 {
			return errors.New("raftmux: request without a group name")
		}
		if _, err := io.ReadFull(r, name[:n]); err != nil {
			return err
		}
		in := inboundRPC{w: w, id: id}
		switch typ {
		case reqAppendEntries:
			req := new(raft.AppendEntriesRequest)
			in.cmd, in.lazy = req, true
			if err := dec.Decode(req); err != nil {
				return err
			}
			in.lazy = len(req.Entries) == 0
		case reqRequestVote:
			req := new(raft.RequestVoteRequest)
			in.cmd = req
			if err := dec.Decode(req); err != nil {
				return err
			}
		case reqRequestPreVote:
			req := new(raft.RequestPreVoteRequest)
			in.cmd = req
			if err := dec.Decode(req); err != nil {
				return err
			}
		case reqTimeoutNow:
			req := new(raft.TimeoutNowRequest)
			in.cmd = req
			if err := dec.Decode(req); err != nil {
				return err
			}
		default:
			return fmt.Errorf("raftmux: request of unknown type %d", typ)
		}
		t := m.group(name[:n])
		if t == nil {
			answer(in, raft.RPCResponse{Error: fmt.Errorf("raftmux: raft group %q is not running on %s", name[:n], m.cfg.Addr)})
			continue
		}
		t.deliver(in)
	}
}
