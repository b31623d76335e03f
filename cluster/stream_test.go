package cluster_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/cluster"
)

func TestStreamLayerPeers(t *testing.T) {
	p := newTestPKI(t)
	pt := p.startPort(t, "node", "", slog.New(slog.DiscardHandler))
	defer pt.stop(t)

	// The same port still serves HTTP/2 to ordinary clients.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + pt.addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Fatalf("GET /ping over %q, want HTTP/2.0", body)
	}

	clientCert, clientKey := p.Issue(t, "alice", false)
	peerCert, peerKey := p.Issue(t, "peer", true)
	tests := []struct {
		name   string
		dial   *tls.Config
		accept bool
	}{
		{"server certificate", p.TLSConfig(t, peerCert, peerKey), true},
		{"client certificate", p.TLSConfig(t, clientCert, clientKey), false},
		{"no certificate", &tls.Config{RootCAs: p.Pool, NextProtos: []string{cluster.ALPN}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.dial.NextProtos = []string{cluster.ALPN}
			c, err := tls.Dial("tcp", pt.addr, tt.dial)
			if err != nil {
				t.Fatal(err) // the handshake itself passes: the refusal is the handoff's
			}
			defer c.Close()
			if tt.accept {
				// The layer reads the first byte before it hands the
				// connection over (no group preamble: the system group's).
				if _, err := c.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				in, err := pt.layer.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(in, buf); err != nil || string(buf) != "ping" {
					t.Fatalf("read %q, %v", buf, err)
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read on a refused raft connection: %v, want EOF", err)
			}
		})
	}

	// The layer's own Dial presents the node's server certificate.
	out, err := pt.layer.Dial(raft.ServerAddress(pt.addr), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	in, err := pt.layer.Accept()
	if err != nil {
		t.Fatal(err)
	}
	in.Close()
	if _, err := pt.layer.Dial("127.0.0.1:1", time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	pt.layer.Close()
	if _, err := pt.layer.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
