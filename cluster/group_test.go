package cluster_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/cluster"
)

// preamble is the group preamble as it goes on the wire, written out here
// so that a change to the format fails this test: nodes of different
// versions must agree on it.
func preamble(group string) []byte {
	return append([]byte{0xF7, 'P', 'L', 'G', byte(len(group))}, group...)
}

// refused checks that the node closed c without a byte.
func refused(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a connection the node should close: %d bytes, %v; want EOF", n, err)
	}
}

// ended checks that c was closed, at either end.
func ended(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on a connection that should be closed: %v", err)
	}
}

// accepted reads want from the connection accept returns.
func accepted(t *testing.T, accept func() (net.Conn, error), want string) net.Conn {
	t.Helper()
	in, err := accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(want))
	in.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(in, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q, %v; want %q", buf, err, want)
	}
	in.SetReadDeadline(time.Time{})
	return in
}

// TestGroupRouting dials a node's Raft port as a peer would: a preamble
// picks the named group, a connection without one (a node of the version
// before groups) reaches the system group, and a preamble naming a group
// the node does not run, or a malformed one, is refused.
func TestGroupRouting(t *testing.T) {
	p := newTestPKI(t)
	pt := p.startPort(t, "node", "", slog.New(slog.DiscardHandler))
	defer pt.stop(t)
	known, err := pt.layer.Group("orders.0")
	if err != nil {
		t.Fatal(err)
	}
	defer known.Close()

	peerCert, peerKey := p.Issue(t, "peer", true)
	dialCfg := p.TLSConfig(t, peerCert, peerKey)
	dialCfg.NextProtos = []string{cluster.ALPN}
	send := func(t *testing.T, b []byte) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", pt.addr, dialCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("legacy", func(t *testing.T) {
		// An AppendEntries RPC starts with its type byte, 0.
		send(t, []byte("\x00ping"))
		accepted(t, pt.layer.Accept, "\x00ping").Close()
	})
	t.Run("named group", func(t *testing.T) {
		send(t, append(preamble("orders.0"), "ping"...))
		accepted(t, known.Accept, "ping").Close()
	})
	t.Run("unknown group", func(t *testing.T) {
		refused(t, send(t, append(preamble("orders.1"), "ping"...)))
	})
	t.Run("malformed preamble", func(t *testing.T) {
		refused(t, send(t, []byte{0xF7, 'P', 'L', 'X', 1, 'a'}))
		refused(t, send(t, append(preamble("a/b"), "ping"...)))
		refused(t, send(t, preamble("")))
	})
	t.Run("group dial", func(t *testing.T) {
		out, err := known.Dial(raft.ServerAddress(pt.addr), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if _, err := out.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		accepted(t, known.Accept, "ping").Close()
	})
}

// TestGroupClose: closing a group ends its connections and its Accept, and
// no other group's; the name can then be registered again. Isolate cuts
// every group, and closing the layer closes them all.
func TestGroupClose(t *testing.T) {
	p := newTestPKI(t)
	pt := p.startPort(t, "node", "", slog.New(slog.DiscardHandler))
	defer pt.stop(t)
	for _, name := range []string{"", strings.Repeat("a", 201), "a/b", "ü"} {
		if _, err := pt.layer.Group(name); err == nil {
			t.Errorf("Group(%q) succeeded", name)
		}
	}
	a, err := pt.layer.Group(strings.Repeat("a", 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.layer.Group(a.Name()); err == nil {
		t.Fatal("registered a running group twice")
	}
	b, err := pt.layer.Group("b")
	if err != nil {
		t.Fatal(err)
	}
	connect := func(t *testing.T, g *cluster.GroupStream) (out, in net.Conn) {
		t.Helper()
		out, err := g.Dial(raft.ServerAddress(pt.addr), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Close() })
		if _, err := out.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		in = accepted(t, g.Accept, "ping")
		t.Cleanup(func() { in.Close() })
		return out, in
	}
	aOut, aIn := connect(t, a)
	bOut, bIn := connect(t, b)

	a.Close()
	ended(t, aOut)
	ended(t, aIn)
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept of a closed group: %v, want net.ErrClosed", err)
	}
	if _, err := a.Dial(raft.ServerAddress(pt.addr), 5*time.Second); err == nil {
		t.Fatal("Dial of a closed group succeeded")
	}
	// The other group's connection still works, both ways.
	if _, err := bOut.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(bIn, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("group b after a closed: read %q, %v", buf, err)
	}

	a2, err := pt.layer.Group(a.Name())
	if err != nil {
		t.Fatalf("register a closed group again: %v", err)
	}
	a.Close() // the old one's Close again leaves the new one alone
	connect(t, a2)

	pt.layer.Isolate(true)
	ended(t, bOut)
	ended(t, bIn)
	if _, err := b.Dial(raft.ServerAddress(pt.addr), 5*time.Second); err == nil {
		t.Fatal("Dial of a group on an isolated layer succeeded")
	}
	pt.layer.Isolate(false)
	connect(t, b)

	pt.layer.Close()
	for _, g := range []*cluster.GroupStream{a2, b} {
		if _, err := g.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept of group %s after the layer closed: %v", g.Name(), err)
		}
	}
	if _, err := pt.layer.Group("c"); err == nil {
		t.Fatal("registered a group on a closed layer")
	}
}
