package raftmux

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// snapshotTimeoutScale: a snapshot's deadline is Config.Timeout per this
// many bytes (at least one Timeout), as NetworkTransport's TimeoutScale.
const snapshotTimeoutScale = 256 << 10

// installSnapshot sends t's snapshot to target on a connection of its own.
func (m *Mux) installSnapshot(t *Transport, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	conn, err := m.cfg.Dial(target, KindSnapshot, m.cfg.Timeout)
	if err != nil {
		return fmt.Errorf("raftmux: dial %s for a snapshot: %w", target, err)
	}
	if !m.track(conn) {
		conn.Close()
		return ErrClosed
	}
	defer m.untrack(conn)
	defer conn.Close()
	// The group's Close ends the transfer.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-t.done:
			conn.Close()
		case <-stop:
		}
	}()
	timeout := max(m.cfg.Timeout, m.cfg.Timeout*time.Duration(args.Size/snapshotTimeoutScale))
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(conn, bufSize)
	bw.WriteByte(byte(len(t.name)))
	bw.WriteString(t.name)
	if err := codec.NewEncoder(bw, newMsgpack()).Encode(args); err != nil {
		return err
	}
	if _, err := io.Copy(bw, data); err != nil {
		return fmt.Errorf("raftmux: send a snapshot to %s: %w", target, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("raftmux: send a snapshot to %s: %w", target, err)
	}
	dec := codec.NewDecoder(bufio.NewReader(conn), newMsgpack())
	var text string
	if err := dec.Decode(&text); err != nil {
		return fmt.Errorf("raftmux: snapshot answer from %s: %w", target, err)
	}
	if err := dec.Decode(resp); err != nil {
		return fmt.Errorf("raftmux: snapshot answer from %s: %w", target, err)
	}
	if text != "" {
		return errors.New(text)
	}
	return nil
}

// serveSnapshot receives one InstallSnapshot and hands it to its group's
// raft, which reads the snapshot from conn.
func (m *Mux) serveSnapshot(conn net.Conn) {
	if err := conn.SetReadDeadline(time.Now().Add(m.cfg.Timeout)); err != nil {
		return
	}
	r := bufio.NewReaderSize(conn, bufSize)
	n, err := r.ReadByte()
	if err != nil || n == 0 {
		return
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return
	}
	var req raft.InstallSnapshotRequest
	if err := codec.NewDecoder(r, newMsgpack()).Decode(&req); err != nil {
		return
	}
	timeout := max(m.cfg.Timeout, m.cfg.Timeout*time.Duration(req.Size/snapshotTimeoutScale))
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return
	}
	enc := codec.NewEncoder(conn, newMsgpack())
	reply := func(resp any, err error) {
		text := ""
		if err != nil {
			text = err.Error()
		}
		if enc.Encode(text) == nil {
			enc.Encode(resp)
		}
	}
	t := m.group(name)
	if t == nil {
		reply(&raft.InstallSnapshotResponse{}, fmt.Errorf("raftmux: raft group %q is not running on %s", name, m.cfg.Addr))
		return
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: &req, Reader: io.LimitReader(r, req.Size), RespChan: respCh}
	select {
	case t.consumeCh <- rpc:
	case <-t.done:
		reply(&raft.InstallSnapshotResponse{}, raft.ErrTransportShutdown)
		return
	case <-m.done:
		return
	}
	select {
	case resp := <-respCh:
		if resp.Response == nil {
			resp.Response = &raft.InstallSnapshotResponse{}
		}
		reply(resp.Response, resp.Error)
	case <-t.done:
		reply(&raft.InstallSnapshotResponse{}, raft.ErrTransportShutdown)
	case <-m.done:
	}
}
