package main

import (
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/membership"
	"github.com/proglog/proglog/node"
)

// defaultGossipPort is the gossip port when --gossip-addr is not given.
const defaultGossipPort = "8401"

// clusterFlags are serve's replication flags. Every node that serves TLS
// runs Raft: without --join it starts (and on restarts stays) a cluster of
// its own, one member until others join it. Gossip, through which others
// join, runs when the node has the cluster's gossip key.
type clusterFlags struct {
	bootstrap     bool
	join          []string
	gossipAddr    string
	gossipKey     string
	gossipKeyFile string
	advertiseAddr string
	raftTimeout   time.Duration
	// partitionCommitTimeout is hashicorp/raft's CommitTimeout for
	// partition groups (0: raft's 50ms); hidden, for benchmarks.
	partitionCommitTimeout time.Duration
	// partitionRaftLog is --partition-raft-log: shared or own.
	partitionRaftLog string
	// partitionRaftTimeout is partition groups' settled heartbeat and
	// election timeout (0: 2.5 × raftTimeout); hidden, for benchmarks.
	partitionRaftTimeout time.Duration
	// raftTransport is "mux" (default) or "stream": how partition groups'
	// Raft RPCs travel; hidden, for benchmarks.
	raftTransport string
	// Raft snapshots: how many entries since the last one trigger the next,
	// how often that is checked, and how many entries compaction keeps.
	snapshotThreshold uint64
	snapshotBytes     byteSize
	trailingBytes     byteSize
	snapshotInterval  time.Duration
	trailingLogs      uint64
	// reapFailedAfter is how long a member may stay failed before the
	// leader removes it (0 = never).
	reapFailedAfter time.Duration
	// leaveOnTerminate: a graceful stop leaves the cluster.
	leaveOnTerminate bool
	// recoverFromPeers: rebuild a damaged Raft log from the peers.
	recoverFromPeers bool
	// diskReserve: free space below which appends are refused; unset
	// (diskReserveSet false) means twice --segment-bytes, 0 none.
	diskReserve    byteSize
	diskReserveSet bool
}

func (c *clusterFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&c.bootstrap, "bootstrap", false, "start a new cluster with this node as its first member (what a node without --join does anyway; kept so a first node's flags say so)")
	f.StringSliceVar(&c.join, "join", nil, "gossip addresses (host:port) of existing cluster members to join (repeat or comma-separate)")
	f.StringVar(&c.gossipAddr, "gossip-addr", "", "address for cluster gossip, UDP and TCP (default: the host of --addr, port "+defaultGossipPort+")")
	f.StringVar(&c.gossipKey, "gossip-key", "", "cluster gossip encryption key, base64 of 32 bytes (make one: openssl rand -base64 32); turns gossip on so other nodes can join. "+
		"The key lets a node gossip, not vote: the leader makes a member a voter only once it presents, at the address it advertises, a server certificate of this node's --tls-ca valid for that address")
	f.StringVar(&c.gossipKeyFile, "gossip-key-file", "", "file holding the base64 gossip key")
	f.StringVar(&c.advertiseAddr, "advertise-addr", "", "address (host:port) other nodes and clients reach this node's TLS port at (default: the listen address)")
	f.DurationVar(&c.raftTimeout, "raft-timeout", time.Second, "Raft heartbeat and election timeout: a dead leader is replaced after about this long")
	f.DurationVar(&c.partitionCommitTimeout, "partition-commit-timeout", 0, "Raft's CommitTimeout for topics' partition groups: an idle leader sends each follower its commit index at least this often, so followers apply (and their readers see) records up to about this long after the leader; longer costs idle partitions less CPU (0 = 2s with --raft-transport mux, which also pushes the commit index as soon as the leader commits; hashicorp/raft's 50ms with stream)")
	_ = f.MarkHidden("partition-commit-timeout") // a tuning knob for benchmarks (docs/benchmarks.md)
	f.DurationVar(&c.partitionRaftTimeout, "partition-raft-timeout", 0, "Raft heartbeat and election timeout of topics' partition groups once each has elected its first leader (which takes --raft-timeout): a partition's dead leader is replaced after about this long, and an idle leader heartbeats each follower about ten times per timeout (0 = 2.5 × --raft-timeout)")
	_ = f.MarkHidden("partition-raft-timeout") // a tuning knob for benchmarks (docs/benchmarks.md)
	f.StringVar(&c.partitionRaftLog, "partition-raft-log", "shared", "where topics' partition groups keep their Raft logs: shared (one write-ahead log per node, <data-dir>/partitions/wal: the entries that groups store at the same time share one write and one fdatasync) or own (a log per group, one fdatasync per group; for a disk per group). A group that already has a log of its own keeps it")
	f.StringVar(&c.raftTransport, "raft-transport", "mux", "how topics' partition groups carry their Raft RPCs: mux (one connection per peer for all groups) or stream (hashicorp/raft's NetworkTransport, connections per group, as before); every node of a cluster must use the same one")
	_ = f.MarkHidden("raft-transport") // for benchmarks (docs/benchmarks.md) and rolling upgrades from a version before the mux
	f.Uint64Var(&c.snapshotThreshold, "raft-snapshot-threshold", 1<<20, "Raft entries since the last snapshot that make the node take the next one (a backstop: --raft-snapshot-bytes usually comes first, and every snapshot starts a new store segment)")
	c.snapshotBytes = 64 << 20
	f.Var(&c.snapshotBytes, "raft-snapshot-bytes", "take a Raft snapshot once the entries since the last one hold this many bytes (0 = only by --raft-snapshot-threshold); bounds what a restart replays")
	f.DurationVar(&c.snapshotInterval, "raft-snapshot-interval", 2*time.Minute, "how often the node checks --raft-snapshot-threshold")
	f.Uint64Var(&c.trailingLogs, "raft-trailing-logs", 10240, "Raft entries kept after a snapshot, so a follower just behind gets entries rather than the snapshot")
	c.trailingBytes = 64 << 20
	f.Var(&c.trailingBytes, "raft-trailing-bytes", "keep about this many bytes of Raft entries after a snapshot, at most --raft-trailing-logs of them (0 = by count only)")
	f.DurationVar(&c.reapFailedAfter, "reap-failed-after", 5*time.Minute, "the leader removes a member that has been unreachable (failed in gossip) this long from Raft and gossip, "+
		"if the voters left alive are a majority without it; it rejoins when it comes back (0 = never remove failed members)")
	f.BoolVar(&c.leaveOnTerminate, "leave-on-terminate", false, "on SIGINT/SIGTERM leave the cluster (the leader removes this node from Raft; a later start needs --join) rather than just stop, "+
		"which keeps it a voter that rejoins when it starts again: what a rolling restart wants. To remove a node that is down for good: proglog nodes remove ID")
	f.BoolVar(&c.recoverFromPeers, "recover-from-peers", false, "if this node's own Raft log is damaged (which otherwise stops serve with exit code 4), move raft/, log/ and serf.snapshot aside "+
		"(<name>.broken-<time>), have the cluster's leader remove this node's old membership, and rejoin under the same --node-id, catching up from the peers; needs --join. "+
		"With an intact Raft log it does nothing, so it can stay on (e.g. in a container's arguments)")
	f.Var(&c.diskReserve, "disk-reserve", "refuse produces (ResourceExhausted, \"disk full\") while the data dir's disk has less free space than this; they resume by themselves once space is freed (default: twice --segment-bytes; 0: only when a write fails for want of space)")
}

// diskReserveBytes is --disk-reserve as cluster.Config.DiskReserve.
func (c *clusterFlags) diskReserveBytes() int64 {
	switch {
	case !c.diskReserveSet:
		return 0 // cluster's default: twice the segment size
	case c.diskReserve == 0:
		return -1
	}
	return int64(c.diskReserve)
}

// gossip says whether the node runs gossip: it joins others or lets them join it.
func (c *clusterFlags) gossip() bool {
	return len(c.join) > 0 || c.gossipKey != "" || c.gossipKeyFile != ""
}

// clusterSettings are the checked cluster flags.
type clusterSettings struct {
	raft       bool // false only with --insecure: a standalone log
	gossip     bool
	gossipAddr string
	key        []byte
	transport  cluster.RaftTransport // partition groups'
}

// resolve checks the cluster flags against each other; addr is --addr.
// What depends on the data dir (--bootstrap with --join on a first start,
// --join on a node that runs a cluster of its own) or on the listener
// (whether other nodes can dial the advertised address) the node checks.
func (c *clusterFlags) resolve(addr string, insecure bool, readFile func(string) ([]byte, error)) (clusterSettings, error) {
	var s clusterSettings
	if insecure {
		if c.bootstrap || c.gossip() || c.gossipAddr != "" || c.advertiseAddr != "" {
			return s, usagef("a cluster needs TLS (nodes authenticate each other with certificates): drop --insecure")
		}
		return s, nil
	}
	s.raft = true
	if c.raftTimeout < 10*time.Millisecond {
		return s, usagef("--raft-timeout %v is too short", c.raftTimeout)
	}
	if c.partitionRaftTimeout != 0 && c.partitionRaftTimeout < 10*time.Millisecond {
		return s, usagef("--partition-raft-timeout %v is too short (0 = 2.5 × --raft-timeout)", c.partitionRaftTimeout)
	}
	if c.partitionCommitTimeout != 0 && c.partitionCommitTimeout < time.Millisecond {
		return s, usagef("--partition-commit-timeout %v is too short (0 = raft's default)", c.partitionCommitTimeout)
	}
	var err error
	transport := c.raftTransport
	if transport == "" {
		transport = "mux" // the flag's default
	}
	if s.transport, err = cluster.ParseRaftTransport(transport); err != nil {
		return s, usagef("--raft-transport %q: want mux or stream", c.raftTransport)
	}
	switch c.partitionRaftLog {
	case "", "shared", "own":
	default:
		return s, usagef("--partition-raft-log %q: want shared or own", c.partitionRaftLog)
	}
	if c.reapFailedAfter < 0 {
		return s, usagef("--reap-failed-after must not be negative (0 never removes failed members)")
	}
	if c.snapshotBytes < 0 || c.trailingBytes < 0 {
		return s, usagef("--raft-snapshot-bytes and --raft-trailing-bytes must not be negative")
	}
	if c.snapshotThreshold < 1 || c.snapshotInterval < 5*time.Millisecond {
		return s, usagef("--raft-snapshot-threshold must be at least 1 and --raft-snapshot-interval at least 5ms")
	}
	for _, j := range c.join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return s, usagef("--join %q: want the host:port of a member's gossip address", j)
		}
	}
	if c.advertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.advertiseAddr); err != nil {
			return s, usagef("--advertise-addr %q: want host:port", c.advertiseAddr)
		}
	}
	if !c.gossip() {
		if c.gossipAddr != "" {
			return s, usagef("--gossip-addr needs the cluster's gossip key (--gossip-key or --gossip-key-file): gossip is how other nodes join this one")
		}
		return s, nil
	}
	s.gossip = true

	s.gossipAddr = c.gossipAddr
	if s.gossipAddr == "" {
		host, _, _ := net.SplitHostPort(addr)
		s.gossipAddr = net.JoinHostPort(host, defaultGossipPort)
	}
	if _, _, err := net.SplitHostPort(s.gossipAddr); err != nil {
		return s, usagef("--gossip-addr %q: want host:port", s.gossipAddr)
	}

	encoded := c.gossipKey
	switch {
	case c.gossipKey != "" && c.gossipKeyFile != "":
		return s, usagef("give --gossip-key or --gossip-key-file, not both")
	case c.gossipKeyFile != "":
		b, err := readFile(c.gossipKeyFile)
		if err != nil {
			return s, usagef("--gossip-key-file: %v", err)
		}
		encoded = strings.TrimSpace(string(b))
	case c.gossipKey == "":
		return s, usagef("--join needs the cluster's gossip key: --gossip-key or --gossip-key-file (make one with: openssl rand -base64 32)")
	}
	if s.key, err = membership.ParseKey(encoded); err != nil {
		return s, usagef("gossip key: %v", err)
	}
	return s, nil
}

// config is the node's cluster configuration from the checked flags.
func (c *clusterFlags) config(s clusterSettings) node.ClusterConfig {
	return node.ClusterConfig{
		Bootstrap:              c.bootstrap,
		Join:                   c.join,
		GossipAddr:             s.gossipAddr,
		GossipKey:              s.key,
		AdvertiseAddr:          c.advertiseAddr,
		RaftTimeout:            c.raftTimeout,
		PartitionCommitTimeout: c.partitionCommitTimeout,
		PartitionOwnRaftLogs:   c.partitionRaftLog == "own",
		PartitionRaftTimeout:   c.partitionRaftTimeout,
		PartitionTransport:     s.transport,
		SnapshotThreshold:      c.snapshotThreshold,
		SnapshotInterval:       c.snapshotInterval,
		SnapshotBytes:          orOff(c.snapshotBytes),
		TrailingLogs:           c.trailingLogs,
		TrailingBytes:          orOff(c.trailingBytes),
		DiskReserve:            c.diskReserveBytes(),
		ReapFailedAfter:        c.reapFailedAfter,
		LeaveOnTerminate:       c.leaveOnTerminate,
		RecoverFromPeers:       c.recoverFromPeers,
	}
}

// orOff maps a byte flag where 0 means off to a cluster.Config field where
// 0 takes the default and a negative value means off.
func orOff(b byteSize) int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}
