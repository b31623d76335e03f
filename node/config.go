package node

import (
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
	"github.com/proglog/proglog/tracing"
)

// Config configures a Node. Zero fields take the defaults their comments
// give; DataDir, NodeID and Addr (or Listener) are required.
type Config struct {
	// DataDir holds everything the node keeps: Raft's state (raft/), the
	// records (log/), the gossip snapshot (serf.snapshot) and, in the
	// quickstart, the development identity (certs/) and its ACL (acl.csv).
	// It is created if missing.
	DataDir string
	// Addr is where the node listens, host:port; port 0 takes a free port
	// (Node.Addr says which). Ignored when Listener is set.
	Addr string
	// Listener, if set, is served instead of a listener on Addr. The node
	// owns it from New on: it is closed when New fails or Run returns.
	Listener net.Listener
	// NodeID names the node in GetServers and the dashboard and is its
	// Raft server ID: unique per node, the same across restarts.
	NodeID string
	// Version is what GetStats reports.
	Version string

	// Insecure serves plaintext HTTP/2 without TLS, every caller
	// anonymous, and a standalone log without Raft. Development only.
	Insecure bool
	// TLSCert and TLSKey are the server's certificate and key, TLSCA the
	// CA that client certificates (and peer nodes) must chain to: PEM
	// files. Without TLSCA no client certificate is accepted, and the node
	// cannot gossip. With none of the three and not Insecure, the node
	// runs the quickstart: a development CA, server and "root" client
	// certificate in <DataDir>/certs and an ACL that lets root do
	// everything, made on the first start and reused after.
	TLSCert, TLSKey, TLSCA string
	// TLSPoll is how often the three TLS files are checked for changes;
	// default 5s. A change takes effect for new connections only (see
	// pki.Reloader), and one that does not make a valid whole is refused.
	TLSPoll time.Duration
	// ACL is the policy file, reloaded when it changes; default
	// <DataDir>/acl.csv. It must exist: everything is denied by default.
	ACL string
	// ACLPoll is how often the ACL file is checked for changes; default 2s.
	ACLPoll time.Duration

	// Store configures the record store (zero fields take logstore's
	// defaults; Logger and Registerer are the node's). Its MaxSegmentBytes
	// also sizes Raft's log segments, and its MaxRecordBytes caps records
	// at the service. Under Raft, Sync is the store's background fsync
	// unless StoreSyncSet (see cluster.Config.StoreSyncSet).
	Store        logstore.Config
	StoreSyncSet bool
	// MaxMessageBytes, SlowConsumerTimeout: see service.Config.
	MaxMessageBytes     int
	SlowConsumerTimeout time.Duration
	// Limits bound connections, streams, headers and slow requests; zero
	// fields take service.DefaultLimits.
	Limits service.Limits
	// ShutdownTimeout is how long in-flight produces may take to finish
	// when Run's context ends; default 10s.
	ShutdownTimeout time.Duration
	// Dashboard, if set, is served at "/" (web.Handler).
	Dashboard http.Handler

	// Cluster configures Raft and gossip; ignored when Insecure.
	Cluster ClusterConfig

	// Tracing, if set, traces the node with OpenTelemetry as the OTEL_*
	// environment variables say (tracing.New: off unless an OTLP endpoint
	// is configured); nil never traces. Its InstanceID defaults to NodeID,
	// its ServiceVersion to Version. Run flushes the spans as it returns.
	Tracing *tracing.Config

	// Logger gets the node's logs; nil discards them.
	Logger *slog.Logger
	// Registerer gets the node's metrics and Gatherer is what /metrics
	// serves; with both nil, a registry of the node's own.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// ClusterConfig configures replication. Every node that serves TLS runs
// Raft: without Join it starts (and on restarts stays) a cluster of its
// own, one member until others join it. It gossips, so that others can
// join it or it can join them, when GossipKey is set.
type ClusterConfig struct {
	// Bootstrap says the node starts a new cluster, which a node without
	// Join does anyway on its first start; with Join it is refused on a
	// first start and ignored once the node has Raft state.
	Bootstrap bool
	// Join lists gossip addresses of members to join; it needs GossipKey.
	Join []string
	// GossipAddr is where Serf gossips (UDP and TCP); required with
	// GossipKey.
	GossipAddr string
	// GossipKey is the cluster's gossip encryption key (32 bytes,
	// membership.ParseKey); nil: no gossip.
	GossipKey []byte
	// AdvertiseAddr is the host:port other nodes and clients reach this
	// node at; default the listener's address.
	AdvertiseAddr string
	// RaftTimeout is Raft's heartbeat and election timeout; default 1s.
	RaftTimeout time.Duration
	// PartitionRaftTimeout is the partition groups' heartbeat and election
	// timeout once each has had a leader (cluster.Config.SettledTimeout;
	// the first election runs on RaftTimeout); zero: 2.5 × RaftTimeout.
	PartitionRaftTimeout time.Duration
	// PartitionCommitTimeout is hashicorp/raft's CommitTimeout for the
	// partition groups (not the system group): how often an idle leader
	// sends each follower its commit index, which bounds how long after the
	// leader a follower applies a record. Zero: cluster.Config's default
	// (2s on the Mux, which also pushes commit indexes as soon as the
	// leader commits; raft's 50ms with PartitionTransport stream).
	PartitionCommitTimeout time.Duration
	// PartitionOwnRaftLogs gives each new partition group a Raft log of its
	// own instead of a share of the node's WAL (topics.Config.OwnRaftLogs).
	PartitionOwnRaftLogs bool
	// PartitionTransport is how partition groups' Raft RPCs travel
	// (cluster.Config.RaftTransport): the zero value shares one connection
	// per peer among all groups; every node must use the same one.
	PartitionTransport cluster.RaftTransport
	// SnapshotThreshold, SnapshotInterval, SnapshotBytes, TrailingLogs,
	// TrailingBytes and DiskReserve are cluster.Config's (zero: its
	// defaults; a negative byte count: off).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	SnapshotBytes     int64
	TrailingLogs      uint64
	TrailingBytes     int64
	DiskReserve       int64
	// ReapFailedAfter is how long a member may stay failed before the
	// leader removes it (membership.Config.ReapFailedAfter); 0: never.
	ReapFailedAfter time.Duration
	// LeaveOnTerminate makes a graceful stop (Run's ctx ending) leave the
	// cluster: gossip announces the departure and the leader removes the
	// node from Raft. Off, the node just stops and stays a voter (others
	// see it failed), which is what a rolling restart needs: the voter
	// set, and so the quorum, never changes.
	LeaveOnTerminate bool
	// RecoverFromPeers: when the node's own Raft log is damaged (which
	// otherwise refuses the start with cluster.ErrRaftLogCorrupt), move its
	// Raft state and records aside, have the cluster remove its old
	// membership, and rejoin under the same NodeID as a new member that
	// catches up from its peers. Needs Join. With an intact log it changes
	// nothing, so it may stay on.
	RecoverFromPeers bool
}

// gossip says whether the node gossips.
func (c ClusterConfig) gossip() bool { return len(c.GossipKey) > 0 }

// quickstart says whether the node makes (or reuses) the development
// identity: TLS without any TLS files.
func (c Config) quickstart() bool {
	return !c.Insecure && c.TLSCert == "" && c.TLSKey == "" && c.TLSCA == ""
}

// withDefaults fills zero fields and checks the fields against each other.
// proglog serve checks its flags before it builds a Config, so what fails
// here is a mistake of another caller; its messages name the fields.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil && c.Gatherer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	if c.ACL == "" {
		c.ACL = filepath.Join(c.DataDir, "acl.csv")
	}
	if c.ACLPoll == 0 {
		c.ACLPoll = 2 * time.Second
	}
	if c.TLSPoll == 0 {
		c.TLSPoll = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Cluster.RaftTimeout == 0 {
		c.Cluster.RaftTimeout = time.Second
	}
	cl := c.Cluster
	switch {
	case c.DataDir == "":
		return c, configErrorf("node: DataDir is required")
	case c.NodeID == "":
		return c, configErrorf("node: NodeID is required")
	case c.Listener == nil && c.Addr == "":
		return c, configErrorf("node: Addr or Listener is required")
	case c.Registerer == nil || c.Gatherer == nil:
		return c, configErrorf("node: Registerer and Gatherer go together")
	case c.ACLPoll < 0 || c.TLSPoll < 0 || c.ShutdownTimeout < 0 || cl.RaftTimeout < 0 || cl.PartitionCommitTimeout < 0 || cl.PartitionRaftTimeout < 0:
		return c, configErrorf("node: ACLPoll, TLSPoll, ShutdownTimeout, Cluster.RaftTimeout, Cluster.PartitionRaftTimeout and Cluster.PartitionCommitTimeout must not be negative")
	case c.Insecure && (c.TLSCert != "" || c.TLSKey != "" || c.TLSCA != ""):
		return c, configErrorf("node: Insecure takes no TLS files")
	case !c.quickstart() && !c.Insecure && (c.TLSCert == "" || c.TLSKey == ""):
		return c, configErrorf("node: TLSCert and TLSKey go together")
	case c.Insecure && (cl.Bootstrap || len(cl.Join) > 0 || cl.gossip() || cl.AdvertiseAddr != ""):
		return c, configErrorf("node: a cluster needs TLS: Insecure takes no Cluster settings")
	case len(cl.Join) > 0 && !cl.gossip():
		return c, configErrorf("node: Cluster.Join needs Cluster.GossipKey")
	case cl.gossip() && cl.GossipAddr == "":
		return c, configErrorf("node: Cluster.GossipKey needs Cluster.GossipAddr")
	case cl.gossip() && !c.quickstart() && c.TLSCA == "":
		return c, configErrorf("node: a node that gossips needs TLSCA: nodes verify each other's certificates against it")
	}
	return c, nil
}
