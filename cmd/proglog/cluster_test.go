package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/node"
)

func pflagSet(c *clusterFlags) *pflag.FlagSet {
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.register(f)
	return f
}

const testKey = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=" // 32 bytes

func TestClusterFlagsResolve(t *testing.T) {
	files := map[string]string{"key": testKey + "\n", "short": "c2hvcnQ="}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	tests := []struct {
		name     string
		flags    clusterFlags
		addr     string // --addr
		insecure bool
		gossip   string // the gossip address, "" for none
		err      string // "" for success
	}{
		{name: "one-member cluster", flags: clusterFlags{}, addr: "127.0.0.1:8400"},
		{name: "one-member cluster on all interfaces", flags: clusterFlags{}, addr: "0.0.0.0:8400"},
		{name: "gossip address without key", flags: clusterFlags{gossipAddr: "127.0.0.1:9000"}, addr: "127.0.0.1:8400", err: "needs the cluster's gossip key"},
		{name: "key alone turns gossip on", flags: clusterFlags{gossipKey: testKey}, addr: "127.0.0.1:8400", gossip: "127.0.0.1:8401"},
		{name: "insecure standalone", flags: clusterFlags{}, addr: "127.0.0.1:8400", insecure: true},
		{name: "bootstrap defaults", flags: clusterFlags{bootstrap: true, gossipKey: testKey}, addr: "127.0.0.1:8400", gossip: "127.0.0.1:8401"},
		{name: "join with key file", flags: clusterFlags{join: []string{"127.0.0.1:8411", "127.0.0.1:8421"}, gossipKeyFile: "key", gossipAddr: "127.0.0.1:8431"},
			addr: "127.0.0.1:8430", gossip: "127.0.0.1:8431"},
		{name: "advertise given", flags: clusterFlags{bootstrap: true, gossipKey: testKey, advertiseAddr: "node1.example:8400"},
			addr: "0.0.0.0:8400", gossip: "0.0.0.0:8401"},
		// Whether --bootstrap may go with --join depends on the data dir,
		// and whether others can dial the address on the listener: the
		// node checks them (TestServeClusterUsage).
		{name: "bootstrap and join", flags: clusterFlags{bootstrap: true, join: []string{"127.0.0.1:8411"}, gossipKey: testKey},
			addr: "127.0.0.1:8400", gossip: "127.0.0.1:8401"},
		{name: "insecure", flags: clusterFlags{bootstrap: true, gossipKey: testKey}, addr: "127.0.0.1:8400", insecure: true, err: "needs TLS"},
		{name: "bootstrap without key", flags: clusterFlags{bootstrap: true}, addr: "127.0.0.1:8400"},
		{name: "join without key", flags: clusterFlags{join: []string{"127.0.0.1:8411"}}, addr: "127.0.0.1:8400", err: "openssl rand -base64 32"},
		{name: "both keys", flags: clusterFlags{bootstrap: true, gossipKey: testKey, gossipKeyFile: "key"}, addr: "127.0.0.1:8400", err: "not both"},
		{name: "missing key file", flags: clusterFlags{bootstrap: true, gossipKeyFile: "nope"}, addr: "127.0.0.1:8400", err: "--gossip-key-file"},
		{name: "short key", flags: clusterFlags{bootstrap: true, gossipKeyFile: "short"}, addr: "127.0.0.1:8400", err: "gossip key"},
		{name: "not base64", flags: clusterFlags{bootstrap: true, gossipKey: "!!!"}, addr: "127.0.0.1:8400", err: "gossip key"},
		{name: "bad join", flags: clusterFlags{join: []string{"nohost"}, gossipKey: testKey}, addr: "127.0.0.1:8400", err: "--join"},
		{name: "bad gossip addr", flags: clusterFlags{bootstrap: true, gossipKey: testKey, gossipAddr: "x"}, addr: "127.0.0.1:8400", err: "--gossip-addr"},
		{name: "bad advertise", flags: clusterFlags{bootstrap: true, gossipKey: testKey, advertiseAddr: "x"}, addr: "127.0.0.1:8400", err: "--advertise-addr"},
		{name: "bad advertise without gossip", flags: clusterFlags{advertiseAddr: "x"}, addr: "127.0.0.1:8400", err: "--advertise-addr"},
		{name: "negative reap", flags: clusterFlags{bootstrap: true, gossipKey: testKey, reapFailedAfter: -time.Second}, addr: "127.0.0.1:8400", err: "--reap-failed-after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.flags.raftTimeout == 0 {
				tt.flags.raftTimeout = time.Second
			}
			if tt.flags.snapshotThreshold == 0 {
				tt.flags.snapshotThreshold, tt.flags.snapshotInterval = 8192, time.Minute
			}
			s, err := tt.flags.resolve(tt.addr, tt.insecure, readFile)
			if tt.err != "" {
				var ue usageError
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want a usage error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.raft == tt.insecure {
				t.Fatalf("raft %v with insecure %v", s.raft, tt.insecure)
			}
			wantKey := 0
			if tt.gossip != "" {
				wantKey = 32
			}
			if s.gossip != (tt.gossip != "") || s.gossipAddr != tt.gossip || len(s.key) != wantKey {
				t.Fatalf("got gossip %v %q key %d bytes; want %q %d", s.gossip, s.gossipAddr, len(s.key), tt.gossip, wantKey)
			}
			cc := tt.flags.config(s)
			if cc.AdvertiseAddr != tt.flags.advertiseAddr || cc.GossipAddr != tt.gossip || len(cc.GossipKey) != wantKey || cc.RaftTimeout != time.Second {
				t.Fatalf("node config %+v does not follow the flags", cc)
			}
		})
	}
}

// serve refuses mistakes in the cluster flags before touching the data dir,
// and refuses to serve a cluster node's data standalone.
func TestServeClusterUsage(t *testing.T) {
	clusterDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(clusterDir, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"insecure cluster", []string{"--insecure", "--bootstrap", "--gossip-key", testKey}, "needs TLS"},
		{"join without gossip key", []string{"--join", "127.0.0.1:8401"}, "gossip key"},
		{"cluster data served insecure", []string{"--insecure", "--data-dir", clusterDir}, "holds Raft state"},
		{"raft timeout", []string{"--bootstrap", "--gossip-key", testKey, "--raft-timeout", "1ms"}, "too short"},
		{"snapshot threshold", []string{"--raft-snapshot-threshold", "0"}, "--raft-snapshot-threshold"},
		{"partition commit timeout", []string{"--partition-commit-timeout", "10us"}, "too short"},
		{"partition raft timeout", []string{"--partition-raft-timeout", "1ms"}, "too short"},
		{"raft transport", []string{"--raft-transport", "tcp"}, "want mux or stream"},
		{"gossip without a CA", []string{"--gossip-key", testKey, "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "needs --tls-ca"},
		{"insecure with TLS", []string{"--insecure", "--tls-ca", "ca.pem"}, "cannot be combined"},
		// The node checks these, against the data dir and the listener.
		{"bootstrap and join on a first start", []string{"--bootstrap", "--join", "127.0.0.1:1", "--gossip-key", testKey,
			"--gossip-addr", "127.0.0.1:0"}, "give one of them"},
		{"unspecified advertise address", []string{"--addr", "0.0.0.0:0", "--gossip-key", testKey}, "--advertise-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "text"}, tt.args...)
			if !slices.Contains(args, "--data-dir") {
				args = append(args, "--data-dir", t.TempDir())
			}
			e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
			if code := run(t.Context(), args, e); code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, stderr.String(), exitUsage, tt.want)
			}
		})
	}
	// The environment reaches the new flags like any other.
	var stderr bytes.Buffer
	getenv := func(k string) string {
		return map[string]string{"PROGLOG_BOOTSTRAP": "true", "PROGLOG_GOSSIP_KEY": "bad"}[k]
	}
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr, getenv: getenv}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}
	if code := run(t.Context(), args, e); code != exitUsage || !strings.Contains(stderr.String(), "gossip key") {
		t.Fatalf("from the environment: exit %d, %q", code, stderr.String())
	}
}

// A node with records of its own cannot join a cluster (its records would
// clash with the cluster's at the same offsets): the error says what to do,
// and the records stay as they were.
func TestServeJoinWithOwnRecords(t *testing.T) {
	dir := t.TempDir()
	l, err := logstore.Open(filepath.Join(dir, "log"), logstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), []byte("standalone record")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--data-dir", dir,
		"--join", "127.0.0.1:1", "--gossip-key", testKey, "--log-format", "text", "--log-level", "error"}
	code := run(t.Context(), args, e)
	if code != exitError || !strings.Contains(stderr.String(), "fresh --data-dir") {
		t.Fatalf("exit %d, stderr %q; want %d and advice", code, stderr.String(), exitError)
	}
	// Nothing changed: the next start is a first start, and the record is there.
	if raft, err := os.Stat(filepath.Join(dir, "raft")); err == nil {
		t.Fatalf("a refused join left %s behind", raft.Name())
	}
	l, err = logstore.Open(filepath.Join(dir, "log"), logstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, next := l.Bounds(); next != 1 {
		t.Fatalf("the log has %d records, want 1", next)
	}
}

// A first start whose --join reaches nobody fails, and leaves no Raft
// state behind, so the next start is a first start again.
func TestServeJoinNobody(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	var stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--data-dir", dir,
		"--join", nobody, "--gossip-key", testKey, "--log-format", "text", "--log-level", "error"}
	if code := run(t.Context(), args, e); code != exitError || !strings.Contains(stderr.String(), "join") {
		t.Fatalf("exit %d, stderr %q; want %d", code, stderr.String(), exitError)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("raft directory after a failed first join: %v", err)
	}
}

func TestDiskReserveFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int64 // cluster.Config.DiskReserve: 0 default, -1 none
	}{
		{nil, 0},
		{[]string{"--disk-reserve", "0"}, -1},
		{[]string{"--disk-reserve", "256MiB"}, 256 << 20},
	} {
		var c clusterFlags
		f := pflagSet(&c)
		if err := f.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		c.diskReserveSet = f.Changed("disk-reserve")
		if got := c.diskReserveBytes(); got != tt.want {
			t.Errorf("%v: DiskReserve %d, want %d", tt.args, got, tt.want)
		}
	}
}

// exitCode gives a damaged Raft log its own code, however it is wrapped,
// and a node configuration that does not fit the data dir the usage code.
func TestExitCodeNodeErrors(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("open: %w", &cluster.RaftLogCorruptError{Dir: "d", Err: errors.New("crc")}), exitRaftLogCorrupt},
		{fmt.Errorf("start: %w", node.ErrConfig), exitUsage},
		{errors.New("listen tcp: address already in use"), exitError},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
