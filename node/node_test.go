package node_test

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"connectrpc.com/grpchealth"

	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
)

// A node serves produces and consumes over its port, stops when its
// context ends, and serves what it acknowledged again after a restart, in
// each of the ways it can be configured. TestMain checks that nothing it
// started outlives it.
func TestServeStopRestart(t *testing.T) {
	rootTLS := func(_ *testing.T, id identity, _ *node.Node) *tls.Config { return id.root }
	tests := []struct {
		name string
		// config configures the node in dir.
		config func(t *testing.T, id identity, dir string) node.Config
		// client is the TLS of a client with every right (nil: plaintext).
		client func(t *testing.T, id identity, n *node.Node) *tls.Config
	}{
		{
			name:   "own TLS",
			config: func(t *testing.T, id identity, dir string) node.Config { return id.config(t, dir) },
			client: rootTLS,
		},
		{
			name: "quickstart",
			config: func(t *testing.T, _ identity, dir string) node.Config {
				return node.Config{DataDir: dir, Addr: "127.0.0.1:0", NodeID: "n1", Logger: clustertest.Logger(t)}
			},
			client: func(t *testing.T, _ identity, n *node.Node) *tls.Config {
				certDir, _ := n.Quickstart()
				p := func(name string) string { return filepath.Join(certDir, name) }
				c, err := pki.ClientTLSConfig(p(pki.DevCAFile), p(pki.DevClientFile), p(pki.DevClientKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
		},
		{
			name: "insecure",
			config: func(t *testing.T, _ identity, dir string) node.Config {
				acl := filepath.Join(t.TempDir(), "acl.csv")
				writeFile(t, acl, "p, anonymous, *, *\n")
				return node.Config{DataDir: dir, Addr: "127.0.0.1:0", NodeID: "n1", Insecure: true, ACL: acl, Logger: clustertest.Logger(t)}
			},
			client: func(*testing.T, identity, *node.Node) *tls.Config { return nil },
		},
		{
			name:   "gossip",
			config: func(t *testing.T, id identity, dir string) node.Config { return gossip(t, id.config(t, dir)) },
			client: rootTLS,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newIdentity(t)
			cfg := tt.config(t, id, t.TempDir())
			var want []string
			for round := range 2 {
				if round > 0 {
					// A restart keeps its address (Raft remembers it): the
					// node takes the listener it is given.
					cfg.Listener = clustertest.Listen(t, cfg.Addr)
				}
				n := start(t, cfg)
				cfg.Addr = n.Addr()
				certDir, created := n.Quickstart()
				if quickstart := tt.name == "quickstart"; (certDir != "") != quickstart || created != (quickstart && round == 0) {
					t.Fatalf("round %d: Quickstart() = %q, %v", round, certDir, created)
				}
				tlsConfig := tt.client(t, id, n.Node)
				c, hc, url := client(t, n.Addr(), tlsConfig)

				values := []string{fmt.Sprint("first-", round), fmt.Sprint("second-", round)}
				offsets := produce(t, c, values...)
				if w := uint64(len(want)); !slices.Equal(offsets, []uint64{w, w + 1}) {
					t.Fatalf("round %d: offsets %v, want %d and %d", round, offsets, w, w+1)
				}
				want = append(want, values...)
				if got := consume(t, c, 0, len(want)); !slices.Equal(got, want) {
					t.Fatalf("round %d: read %q, want %q", round, got, want)
				}
				if got := servers(t, c); !slices.Equal(got, []string{"n1@" + n.Addr() + "*"}) {
					t.Fatalf("GetServers = %v", got)
				}
				if got := health(t, hc, url, ""); got != grpchealth.StatusServing {
					t.Fatalf("health = %v", got)
				}
				if !cfg.Insecure {
					waitFor(t, "proglog.Writes to be SERVING", func() bool {
						return health(t, hc, url, service.WritesHealthService) == grpchealth.StatusServing
					})
				}
				hc.CloseIdleConnections()
				if err := n.stop(t); err != nil {
					t.Fatalf("round %d: Run returned %v after its context ended", round, err)
				}
			}
		})
	}
}
