package node_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/cluster/clustertest"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/node"
)

// A part that cannot start makes New fail with an error that says which
// and why, and leaves nothing running: no goroutine, no open listener, and
// on a first start no Raft state.
func TestNewFails(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the configuration that fails, given a good one in
		// an empty data dir.
		setup  func(t *testing.T, id identity, cfg node.Config) node.Config
		is     error  // in the error's chain, if set
		want   string // in the error's message
		noRaft bool   // the data dir holds no Raft state afterwards
	}{
		{
			name: "port taken",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				ln := clustertest.Listen(t, "")
				t.Cleanup(func() { ln.Close() })
				cfg.Addr = ln.Addr().String()
				return cfg
			},
			want: "address already in use", noRaft: true,
		},
		{
			name: "data dir under a file",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				file := filepath.Join(cfg.DataDir, "file")
				writeFile(t, file, "")
				cfg.DataDir = filepath.Join(file, "data")
				return cfg
			},
			want: "not a directory",
		},
		{
			name: "raft dir not writable",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				// A file where Raft's directory goes fails as a
				// read-only directory would, also for root.
				writeFile(t, filepath.Join(cfg.DataDir, "raft"), "")
				return cfg
			},
			want: "raft",
		},
		{
			name: "no ACL file",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg.ACL = filepath.Join(cfg.DataDir, "missing.csv")
				return cfg
			},
			want: "missing.csv", noRaft: true,
		},
		{
			name: "certificate missing",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg.TLSCert = filepath.Join(cfg.DataDir, "missing.pem")
				return cfg
			},
			want: "missing.pem", noRaft: true,
		},
		{
			name: "no node ID",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg.NodeID = ""
				return cfg
			},
			is: node.ErrConfig, want: "NodeID", noRaft: true,
		},
		{
			name: "gossip advertised on all interfaces",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg = gossip(t, cfg)
				cfg.Addr = "0.0.0.0:0"
				return cfg
			},
			is: node.ErrConfig, want: "advertise-addr", noRaft: true,
		},
		{
			name: "bootstrap and join on a first start",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg = gossip(t, cfg, "127.0.0.1:1")
				cfg.Cluster.Bootstrap = true
				return cfg
			},
			is: node.ErrConfig, want: "give one of them", noRaft: true,
		},
		{
			name: "Raft state served insecure",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				stopped(t, cfg)
				return node.Config{DataDir: cfg.DataDir, Addr: cfg.Addr, NodeID: cfg.NodeID, Insecure: true}
			},
			is: node.ErrConfig, want: "holds Raft state",
		},
		{
			name: "join from a cluster of its own",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				stopped(t, cfg)
				return gossip(t, cfg, "127.0.0.1:1")
			},
			is: node.ErrConfig, want: "cluster of its own",
		},
		{
			name: "join with records of its own",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				l, err := logstore.Open(filepath.Join(cfg.DataDir, "log"), logstore.Config{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := l.Append(t.Context(), []byte("standalone")); err != nil {
					t.Fatal(err)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				return gossip(t, cfg, "127.0.0.1:1")
			},
			is: cluster.ErrExistingStore, want: "fresh --data-dir", noRaft: true,
		},
		{
			name: "damaged Raft log",
			setup: func(t *testing.T, id identity, cfg node.Config) node.Config {
				cfg.Store.MaxSegmentBytes = 4 << 10
				n := start(t, cfg)
				c, _, _ := client(t, n.Addr(), id.root)
				for i := range 30 {
					produce(t, c, fmt.Sprintf("record-%d-%s", i, strings.Repeat("x", 1500)))
				}
				if err := n.stop(t); err != nil {
					t.Fatal(err)
				}
				segs, err := filepath.Glob(filepath.Join(cfg.DataDir, "raft", "log", "*.store"))
				if err != nil || len(segs) < 3 {
					t.Fatalf("raft log segments %v, %v; want at least 3", segs, err)
				}
				slices.Sort(segs)
				b, err := os.ReadFile(segs[1]) // the oldest holds Raft's first entries, this one records
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 1
				writeFile(t, segs[1], string(b))
				cfg.Addr = n.Addr()
				return cfg
			},
			is: cluster.ErrRaftLogCorrupt, want: "NEW --node-id",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newIdentity(t)
			cfg := tt.setup(t, id, id.config(t, t.TempDir()))
			before := goleak.IgnoreCurrent()
			n, err := node.New(cfg)
			if err == nil {
				t.Cleanup(func() { n.Run(canceled()) })
				t.Fatal("New succeeded")
			}
			t.Logf("New: %v", err)
			if tt.is != nil && !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v; want %v with %q", err, tt.is, tt.want)
			}
			goleak.VerifyNone(t, before)
			if tt.noRaft {
				if _, err := os.Stat(filepath.Join(cfg.DataDir, "raft")); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("raft dir after a failed first start: %v", err)
				}
			}
		})
	}
}

// New closes a listener it was given when it fails.
func TestNewClosesListener(t *testing.T) {
	ln := clustertest.Listen(t, "")
	_, err := node.New(node.Config{Listener: ln, DataDir: t.TempDir()})
	if !errors.Is(err, node.ErrConfig) {
		t.Fatalf("New without NodeID: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the listener after New failed: %v", err)
	}
}

// A part that fails while Run starts stops the others, and Run returns its
// error once nothing is left running.
func TestRunFails(t *testing.T) {
	tests := []struct {
		name   string
		config func(t *testing.T, id identity, dir string) node.Config
		want   string
	}{
		{
			// Gossip joins in Run, once the port serves.
			name: "join reaches nobody",
			config: func(t *testing.T, id identity, dir string) node.Config {
				return gossip(t, id.config(t, dir), freeGossipAddr(t))
			},
			want: "join",
		},
		{
			name: "accepting fails",
			config: func(t *testing.T, _ identity, dir string) node.Config {
				acl := filepath.Join(dir, "acl.csv")
				writeFile(t, acl, "p, anonymous, *, *\n")
				return node.Config{DataDir: dir, NodeID: "n1", Insecure: true, ACL: acl,
					Listener: brokenListener{clustertest.Listen(t, "")}, Logger: clustertest.Logger(t)}
			},
			want: "serve: accept: broken",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tt.config(t, newIdentity(t), dir)
			before := goleak.IgnoreCurrent()
			n, err := node.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = n.Run(t.Context())
			t.Logf("Run: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want an error with %q", err, tt.want)
			}
			goleak.VerifyNone(t, before)
			// A first start that failed leaves no Raft state behind.
			if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("raft dir after a failed first start: %v", err)
			}
		})
	}
}

// brokenListener fails to accept, as a listener whose socket broke does.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("accept: broken") }

// Run with a context that has already ended takes apart what New built,
// and runs only once.
func TestRunStopped(t *testing.T) {
	id := newIdentity(t)
	before := goleak.IgnoreCurrent()
	n, err := node.New(id.config(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(canceled()); err != nil {
		t.Fatalf("Run with an ended context: %v", err)
	}
	goleak.VerifyNone(t, before)
	if err := n.Run(canceled()); err == nil {
		t.Fatal("a second Run succeeded")
	}
}

// canceled is a context that has ended.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
