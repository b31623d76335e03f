package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/raftwal"
)

// Config configures a node of the replicated log.
type Config struct {
	// NodeID is the node's Raft server ID; it must stay the same across
	// restarts so the node rejoins as itself.
	NodeID string
	// DataDir holds Raft's state in <DataDir>/raft (Raft log, stable
	// store, snapshots) and the records in <DataDir>/log (a logstore.Log).
	DataDir string
	// Bootstrap makes a node without Raft state start a one-member cluster
	// of itself, or of Voters when given. Without Voters, set it on the
	// first node only; others join through membership. Ignored once state
	// exists.
	Bootstrap bool
	// Voters (node ID to Raft address), with Bootstrap, is the
	// configuration a node without Raft state starts with instead of itself
	// alone: every voter is given the same map and bootstraps with it, so
	// none needs to be added by a leader. It must hold NodeID at the
	// Stream's address.
	Voters map[string]string
	// Stream carries Raft's traffic; its address is the node's Raft (and
	// RPC) address. With Group "" the Log closes it on Close, and when New
	// fails.
	Stream *StreamLayer
	// Group is the Raft group this Log runs on Stream: "" is the node's
	// system group; a name (see StreamLayer.Group) runs the Log's Raft over
	// Stream.Group(Group), and Close (or a failed New) closes that group
	// only. Each group needs its own DataDir, and its own Registerer if
	// any. The Log's log lines carry group=Group.
	Group string
	// RaftTransport is how a named group's Raft RPCs travel (the system
	// group's always take hashicorp/raft's NetworkTransport on Stream):
	// TransportMux, the default, shares the node's one connection per peer
	// with every other group (package raftmux); TransportStream gives the
	// group connections of its own (StreamLayer.Group), as before raftmux.
	// Every replica of a group must use the same one.
	RaftTransport RaftTransport
	// SharedLog, when set, keeps the group's Raft log in the node's shared
	// WAL (package raftwal: one write and one fdatasync for the entries of
	// every group that stores at once) instead of in a logstore.Log of its
	// own under <DataDir>/raft/log. A group whose own Raft log already
	// holds entries (written before, or without, SharedLog) keeps it.
	SharedLog *raftwal.WAL
	// OwnRaftLog gives a group with no Raft log yet a log of its own even
	// with SharedLog set; SharedLog still serves a group whose entries it
	// holds (one started without OwnRaftLog).
	OwnRaftLog bool
	// Store configures the local record store (the FSM); its
	// MaxSegmentBytes also sizes the segments of Raft's log, which Raft's
	// compaction deletes whole. Its Sync policy defaults here to
	// SyncInterval every minute (see doc.go: the Raft log is the durable
	// copy); its Logger falls back to Logger. Its Registerer is not used:
	// the store's metrics go to Registerer.
	Store logstore.Config
	// StoreSyncSet keeps Store.Sync and Store.SyncInterval as given, even
	// when Sync is SyncAlways (the zero value), instead of the default:
	// SyncInterval every storeSyncInterval.
	StoreSyncSet bool

	// Alone promises that no other node joins while this process runs (a
	// node without gossip). If the Raft configuration then holds only this
	// node, Raft runs with soloTimeout, so the node elects itself within a
	// tenth of a second of starting instead of after a heartbeat timeout;
	// with anyone else in the configuration the timeouts below apply.
	Alone bool

	// Raft timing; zero fields take hashicorp/raft's defaults (1s heartbeat
	// and election timeouts, 500ms leader lease, 50ms commit timeout), which
	// suit production, except that a named group on the Mux defaults to a
	// 2s CommitTimeout (muxCommitTimeout: the Mux pushes commit indexes
	// itself). Tests on loopback use much shorter ones.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SettledTimeout, when longer than HeartbeatTimeout, becomes the
	// heartbeat and election timeout once the group has had a leader
	// (raft's ReloadConfig): a new or restarted group elects its first
	// leader as fast as HeartbeatTimeout allows, while a settled one
	// heartbeats each follower about ten times per SettledTimeout instead
	// of per HeartbeatTimeout, and replaces a dead leader after about
	// SettledTimeout. LeaderLeaseTimeout, which raft cannot change at run
	// time, must suit both: at most HeartbeatTimeout, and well above a
	// tenth of SettledTimeout (a leader steps down when a quorum has not
	// answered within its lease). proglog's partitions use it: many idle
	// groups cost heartbeats, and a partition's failover may take seconds.
	SettledTimeout time.Duration
	// SnapshotThreshold (entries since the last snapshot), SnapshotInterval
	// (how often to check) and TrailingLogs (entries kept after a snapshot);
	// zero takes 1<<20 (a backstop behind SnapshotBytes: every snapshot
	// seals a store segment, so a low count with small entries would make
	// many small segments) and raft's defaults (120s, 10240).
	SnapshotThreshold uint64
	// SnapshotBytes triggers a snapshot once the entries applied since the
	// latest one hold this many bytes, whatever their count; it bounds what
	// a restart replays. Default 64 MiB; negative turns it off.
	SnapshotBytes int64
	// TrailingBytes sizes raft's TrailingLogs (at most TrailingLogs) so that
	// compaction keeps about this many bytes of entries behind a snapshot,
	// whatever their count. Default 64 MiB; negative turns it off.
	TrailingBytes    int64
	SnapshotInterval time.Duration
	TrailingLogs     uint64
	// RetainSnapshots is how many snapshots to keep on disk; default 2.
	RetainSnapshots int

	// DiskReserve is the free space (bytes, on the file systems of DataDir,
	// raft/ and log/) below which appends are refused with ErrDiskFull, so
	// the disk never fills up to the last byte (see disk.go). Zero means
	// twice the segment size (Store.MaxSegmentBytes, or logstore's
	// default); negative means none: only a write that fails with ENOSPC
	// stops appends.
	DiskReserve int64
	// DiskWatch, when set, runs this Log's background disk probes with
	// those of the other Logs given it (a node's system group and
	// partitions share one); nil: the Log runs its own.
	DiskWatch *DiskWatch

	// FetchRecord, when set, reads the record at offset from the peer
	// whose Raft (and RPC) address is addr, so that a record found damaged
	// in the local store is healed from its copy (see storeDamage). A node
	// wires it to the peer's Consume.
	FetchRecord func(ctx context.Context, addr string, offset uint64) (logstore.Record, error)

	// Meta, set on the system group only, keeps the catalogue: it applies
	// the group's catalogue entries (ProposeMeta) and its state travels in
	// the group's snapshots.
	Meta MetaFSM

	// Now is the clock this node stamps the records it leads with; nil is
	// time.Now. (Tests give nodes skewed clocks.)
	Now func() time.Time

	// Logger receives Raft's and the cluster's reports; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, gets the node's metrics and those of its two
	// logstores, labelled log="records" (the local store) and log="raft"
	// (Raft's log); all are unregistered on Close. Several Logs in one
	// process need a Registerer each, wrapped with
	// prometheus.WrapRegistererWith and labels that tell them apart.
	Registerer prometheus.Registerer

	// TracerProvider, if set, traces appends: a span from raft.Apply to
	// its answer, with a child for the write and fdatasync of Raft's log
	// that held the entry (see tracing.go). nil: no tracing, at no cost.
	TracerProvider trace.TracerProvider
	// SpanAttributes describe this Log on its spans, e.g. the topic and
	// partition it holds (topics.Manager sets them).
	SpanAttributes []attribute.KeyValue
}

// muxCommitTimeout is a named group's default CommitTimeout on the Mux.
// raft's own (50 ms) makes an idle leader send each follower an
// AppendEntries every 50-100 ms only to tell it the commit index; with the
// Mux's commit pushes (raftmux/commit.go) followers learn it moments after
// the leader commits, so the ticks are only a backstop, and they were two
// thirds of an idle group's RPCs. 2 s rather than 500 ms: 300 idle
// partitions cost a node 7.9-8.6% of a core instead of 9.3-9.6%, with the
// same follower lag (7-10 ms, the pushes); a lost push costs up to 2-4 s.
const muxCommitTimeout = 2 * time.Second

// RaftTransport picks a named group's Raft transport (Config.RaftTransport).
type RaftTransport int

const (
	// TransportMux carries the group over the node's Mux (StreamLayer.Mux):
	// one connection per peer for all groups.
	TransportMux RaftTransport = iota
	// TransportStream gives the group hashicorp/raft's NetworkTransport on
	// connections of its own.
	TransportStream
)

// ParseRaftTransport reads "mux" or "stream".
func ParseRaftTransport(s string) (RaftTransport, error) {
	switch s {
	case "mux":
		return TransportMux, nil
	case "stream":
		return TransportStream, nil
	}
	return 0, fmt.Errorf("cluster: raft transport %q: want mux or stream", s)
}

func (t RaftTransport) String() string {
	switch t {
	case TransportMux:
		return "mux"
	case TransportStream:
		return "stream"
	}
	return fmt.Sprintf("RaftTransport(%d)", int(t))
}

// storeSyncInterval is how often the store's active segment is synced by
// default. Correctness needs only the sync at each seal (Open scans the
// active segment and Raft re-applies its lost tail); the periodic one just
// bounds that replay, so it is rare: on a disk shared with Raft's log each
// sync competes with the fdatasyncs acknowledgements wait for.
const storeSyncInterval = time.Minute

func (c Config) withDefaults() (Config, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Group != "" {
		c.Logger = c.Logger.With("group", c.Group)
	}
	if c.Store.Logger == nil {
		c.Store.Logger = c.Logger
	}
	c.Store.Registerer = logRegisterer(c.Registerer, recordsLog)
	if !c.StoreSyncSet && c.Store.Sync == logstore.SyncAlways {
		// Raft's log makes appends durable; the store only needs its sealed
		// segments whole after a machine crash (a torn active tail is
		// re-applied from Raft), which SyncInterval gives: a sealed segment
		// is fdatasynced when sealed, the active one every minute.
		c.Store.Sync = logstore.SyncInterval
		c.Store.SyncInterval = storeSyncInterval
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = defaultSnapshotBytes
	}
	if c.TrailingBytes == 0 {
		c.TrailingBytes = defaultTrailingBytes
	}
	if c.RetainSnapshots == 0 {
		c.RetainSnapshots = 2
	}
	if c.CommitTimeout == 0 && c.Group != "" && c.RaftTransport == TransportMux {
		c.CommitTimeout = muxCommitTimeout
	}
	switch {
	case c.NodeID == "":
		return c, errors.New("cluster: NodeID is required")
	case c.DataDir == "":
		return c, errors.New("cluster: DataDir is required")
	case c.Stream == nil:
		return c, errors.New("cluster: Stream is required")
	case c.RaftTransport != TransportMux && c.RaftTransport != TransportStream:
		return c, fmt.Errorf("cluster: unknown %v", c.RaftTransport)
	case c.RetainSnapshots < 1:
		return c, fmt.Errorf("cluster: RetainSnapshots %d < 1", c.RetainSnapshots)
	case c.SettledTimeout > 0 && c.LeaderLeaseTimeout > 0 && !leaseFits(c.LeaderLeaseTimeout, c.SettledTimeout):
		return c, fmt.Errorf("cluster: LeaderLeaseTimeout %v is too short for SettledTimeout %v: a leader would lose its lease between heartbeats", c.LeaderLeaseTimeout, c.SettledTimeout)
	}
	if c.Group != "" {
		if err := validGroupName(c.Group); err != nil {
			return c, err
		}
	}
	return c, c.checkVoters()
}

// checkVoters refuses Voters that this node cannot bootstrap with.
func (c Config) checkVoters() error {
	if len(c.Voters) == 0 {
		return nil
	}
	if !c.Bootstrap {
		return errors.New("cluster: Voters are the configuration to bootstrap with; they need Bootstrap")
	}
	addr, ok := c.Voters[c.NodeID]
	if !ok {
		return fmt.Errorf("cluster: Voters do not hold this node, %s", c.NodeID)
	}
	if self := c.Stream.Addr().String(); addr != self {
		return fmt.Errorf("cluster: Voters give this node (%s) the address %s, but its Stream's is %s", c.NodeID, addr, self)
	}
	for id, addr := range c.Voters {
		if id == "" || addr == "" {
			return fmt.Errorf("cluster: Voters hold an empty ID or address (%q: %q)", id, addr)
		}
	}
	return nil
}

// maxRecordBytes is the limit the Store config applies.
func (c Config) maxRecordBytes() int {
	if c.Store.MaxRecordBytes > 0 {
		return c.Store.MaxRecordBytes
	}
	return logstore.DefaultConfig().MaxRecordBytes
}
