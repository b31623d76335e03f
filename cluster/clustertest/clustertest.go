// Package clustertest has what tests of a cluster of in-process nodes
// share, whatever else their nodes carry: loopback listeners that a
// restarted node can take back, a logger that speaks only under -v, and
// waiting for a leader and adding voters while leadership may move.
package clustertest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/proglog/proglog/cluster"
)

// Listen listens on addr, or on a free loopback port when addr is "". A
// restarted node asks for its old address, which the kernel may hold for
// a moment, so it retries for about a second.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// Logger writes to stderr under go test -v and nowhere otherwise.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// WaitLeader returns the index of the log that leads, waiting up to 20s.
// Nil logs (stopped nodes) are skipped.
func WaitLeader(t testing.TB, logs ...*cluster.Log) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		for i, l := range logs {
			if l != nil && l.IsLeader() {
				return i
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no leader elected")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Join adds the voter id at addr through whichever of logs leads, again
// while leadership moves (short test timeouts on a loaded machine can move
// it mid-change: Join then says it does not lead).
func Join(t testing.TB, logs []*cluster.Log, id, addr string) {
	t.Helper()
	var err error
	for range 100 {
		err = logs[WaitLeader(t, logs...)].Join(id, addr)
		if !errors.Is(err, cluster.ErrNotLeader) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
}
