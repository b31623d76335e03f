// Package cluster replicates proglog's log with Raft (hashicorp/raft): a
// Log appends through the leader and serves reads from a local
// logstore.Log that holds only committed records.
//
// # Shape
//
// Each node keeps Raft's log in <DataDir>/raft/log, a logstore.Log whose
// record offset is the entry's Raft index (raftstore.go: SyncAlways, one
// write and one fdatasync per StoreLogs), or, with Config.SharedLog, in
// the group's share of the node's write-ahead log (package raftwal: the
// same operations, and one write and one fdatasync for the entries of
// every group storing at once; a group keeps its entries wherever they
// already are). The latest entries, up to 64 and 1 MiB (and the newest
// two whatever their size), are also cached in memory by logcache.go, so
// replicating and applying them reads no disk. Its stable store (term,
// vote) is in <DataDir>/raft/stable, snapshots beside them, and the records in
// <DataDir>/log, a logstore.Log that is Raft's FSM. Append and AppendBatch
// run raft.Apply on the leader; a batch is one Raft entry (format in
// entry.go). The entry is acknowledged once a quorum has it
// durably in their Raft logs and the leader applied it. Applying numbers
// the records and hands them to a store writer (writer.go), which appends
// them to the store moments later, off the FSM's goroutine, so the store
// write overlaps with the next entries instead of delaying every
// acknowledgement. Reads of a committed record the writer has not written
// yet wait for it, so the caller still reads its own write on the leader at
// once; Bounds and Stats count it too. A crash loses what the writer had
// not written; Raft re-applies it once the node knows the commit index
// again, so a restarted node's store may briefly hold less than it
// acknowledged: CatchUp waits for that, and a one-member cluster's node
// (proglog serve) calls it before it serves. In a bigger cluster a
// restarted node's reads lag until it has caught up, as a follower's do. A follower refuses appends
// with a *NotLeaderError naming the leader's RPC address; the service
// forwards the request there. An append that finds no leader (an election,
// or a node that just started) waits up to three election timeouts for one.
//
// # Raft's log on the logstore
//
// Raft deletes entries three ways, never from the middle, and each maps
// to one logstore operation: a compacted head after a snapshot
// (TruncateBefore, whole segments: a few entries below the compaction point
// may stay, Raft never reads them), a conflicting tail that a new leader
// overwrites (TruncateFrom; the book's version of this store got it wrong
// and wiped followers). StoreLogs restarts the log (Reset) when its first
// entry lies past the end (the first entry after an installed snapshot the
// log ended before) and truncates when it lies inside (an overwrite), so
// the store never holds a gap or two versions of an index. The store is not
// monotonic (raft.MonotonicLogStore): with one, Raft deleted every entry
// after installing a snapshot but kept its cached last index, and a
// follower that had stored entries past the snapshot refused every append
// after it and fetched the snapshot again forever. Once the log holds
// nothing up to the newest applied snapshot, GetLog answers for the
// snapshot's last entry with its index and term (what a follower checks a
// resent append against; Raft never applies or sends that entry).
//
// # One member to start with
//
// A node started without anyone to join bootstraps a cluster of itself;
// it stays that cluster's member across restarts, and others can join it.
// If its store already holds records (it served a log before it ran Raft),
// New adopts them: once the node leads, it hands Raft a snapshot of the
// store as it is (raft.Restore), the FSM keeps the store since it already
// holds every record the snapshot names, and the first replicated record
// gets the next offset. A node that joins later receives the adopted
// records with that snapshot. A marker file (raft/adopting) makes a crash
// in the middle redo the adoption on the next start.
//
// Raft shares the node's TLS port: connections that negotiate the ALPN
// protocol "proglog-raft" are handed by the HTTP server to the
// StreamLayer. Both sides present server certificates from the cluster's
// CA; a client certificate (client-auth usage only) is refused. That holds
// for every group and both transports.
//
// # Raft groups
//
// A node runs its system group (the Log above, Config.Group "") and may run
// named groups beside it, such as a topic's partitions: each is a Log of
// its own, with its own DataDir and its own Raft configuration, and all
// share the node's StreamLayer, so the same port, ALPN and certificate
// checks. The replicas of a group can all bootstrap with the same
// Config.Voters, so none has to be added by a leader; only a node
// bootstrapping alone adopts a store that already holds records (others
// refuse it: ErrExistingStore).
//
// # Transports: one connection per peer for every named group
//
// A named group's Raft RPCs travel, by default (Config.RaftTransport
// TransportMux), over the node's raftmux.Mux (StreamLayer.Mux; package
// raftmux has the frame format): each node dials each peer once, and every
// group's requests to that peer share that connection, answered on it by
// request id, many in flight at once; one writer goroutine per connection
// writes whatever is queued with one write, and idle traffic (heartbeats,
// AppendEntries without entries) waits up to 5 ms for company, so the
// heartbeats of hundreds of groups cost a few writes a second instead of
// one write and one blocking read each. The leader's transport also pushes
// the commit index to a follower as soon as the leader has committed
// entries the follower holds (raftmux/commit.go), so a group on the Mux
// runs a 2 s CommitTimeout (Config.CommitTimeout's default there)
// without followers applying records later: raft's 50 ms ticks were two
// thirds of an idle group's RPCs. A pair of nodes holds two such
// connections (one dialed each way), whatever the number of groups; an
// InstallSnapshot gets a connection of its own for its duration, so a
// snapshot of gigabytes does not hold up other groups. A connection that
// fails fails every request in flight on it at once; the next request
// dials again (with a backoff after a failed dial). Closing a group's Log
// closes only its raftmux.Transport: its requests in flight fail, peers'
// requests for it are answered with an error, other groups go on. Isolate,
// CloseInbound and Close cut the Mux's connections with the rest, since the
// Mux dials through the StreamLayer and receives through Handoff.
//
// A Mux connection starts with its own preamble, 0xF7 'P' 'L' 'M' and a
// kind byte (group.go). With TransportStream a group gets hashicorp/raft's
// NetworkTransport on connections of its own (StreamLayer.Group), as before
// the Mux: such a connection starts with the group preamble, 0xF7 'P' 'L'
// 'G', a length byte and the group's name. raft's NetworkTransport starts a
// message with its RPC type byte, 0 to 4, so a connection starting with
// anything but 0xF7 is the system group's, as every connection was before
// groups existed. The accepting node reads the preamble (a peer gets
// preambleTimeout to send it) and hands the connection to the Mux or to the
// group's raft; it closes a connection naming a group it does not run, and
// the peer's raft dials again later.
//
// Mixed versions: the system group always runs on the NetworkTransport
// with no preamble, so nodes of every version keep talking to it (the
// catalogue, the default topic). A node of a version before the Mux
// closes a connection with the 'PLM' preamble (a tag it does not know), so
// partition groups between it and a node on the Mux do not replicate (their
// rafts report failed heartbeats) until both run the same transport: during
// a rolling upgrade from such a version, run the upgraded nodes with
// serve --raft-transport=stream, and switch every node to the default once
// all run the new version (a group's replicas must all use one transport).
//
// Idle groups: with Config.SettledTimeout (proglog's partitions), a group
// elects its first leader on the short HeartbeatTimeout and then, once it
// has had a leader, raft's heartbeat and election timeouts become the
// settled one (ReloadConfig): an idle leader heartbeats each follower about
// ten times per settled timeout, and a dead leader is replaced after about
// that long. raft cannot change the leader lease at run time, so
// LeaderLeaseTimeout must span the settled heartbeats from the start (New
// refuses one shorter than two fifths of SettledTimeout).
//
// # Offsets are deterministic
//
// The FSM numbers records itself: the records of the committed entries, in
// Raft order, get consecutive offsets starting from 0. Every node applies
// the same entries in the same order, so every node assigns the same offset
// to the same record, and the offset the leader returns is the record's
// offset everywhere. Entries that are not commands (configuration, no-op,
// barrier) carry no records; a malformed command carries none, on every
// node alike.
//
// # Times are the leader's, and never decrease
//
// A record's time is part of the replicated entry, not stamped by each
// node's store: the leader writes its clock into the entry when it proposes
// it (entry.go gives the format byte by byte, with the key and headers of
// each record), and the FSM gives the entry's records
// max(previous record's time, proposed time) (fsm.stamp). The floor is
// state every node derives from the same committed entries in the same
// order, so every node stores the same time for the same offset, and age
// retention judges the same times everywhere (it still deletes whole
// segments, whose boundaries differ between nodes). The floor also makes times non-decreasing along the log when
// a new leader's clock is behind the old one's: a lookup by time
// (OffsetForTime, a binary search) relies on that. A clock that jumps ahead
// drags later records' times with it until real time catches up. The floor
// is kept across restarts in the snapshot header (fsm.go; a header of the
// first version has none, and the floor is then read from the store's last
// record). Entries of the first format, written before records had times,
// take the time the leader appended them to its Raft log
// (raft.Log.AppendedAt, which the Raft log store keeps).
//
// # Applying exactly once across restarts
//
// On a restart Raft replays every committed entry after its latest snapshot
// (or from entry 1 when it has none). The FSM keeps next, the offset the
// next applied record gets, and the snapshot header records next as of the
// snapshot's Raft index. Before the replay the store is cut back to exactly
// what Raft vouches for without its log:
//
//   - With a snapshot, Raft restores the latest one, whose files are the
//     store's own sealed segments (see Snapshots). Restore sets next from
//     the header and, if the store reaches that offset, cuts the store back
//     to it (a segment boundary, so no linked byte changes) without reading
//     a record; otherwise it replaces the store with the snapshot's files.
//   - Without one, New empties the store (keeping its lowest offset): Raft's
//     log still holds every entry from the first, since nothing is
//     compacted before a snapshot.
//
// The replay then numbers the records of the entries after that point
// exactly as they were first numbered and hands them to the store writer,
// which writes them again; records below the store's lowest offset are
// skipped (retention deleted them). Each record is therefore written once
// per apply and the store never holds one that Raft's log does not vouch
// for, whatever happened to the store or to Raft's log since (a flipped
// byte, a torn tail, a Raft log that lost entries the store had applied:
// the store is rebuilt from Raft's log as it is). A restart costs what came
// after the latest snapshot, which Config.SnapshotBytes bounds (a snapshot
// every 64 MiB of entries by default, besides Raft's count of entries), not
// the log's size.
//
// Why the prefix argument holds: the store only receives records from
// committed entries (the FSM sees nothing else), committed entries never
// change (Raft's log matching and leader completeness), and a restore
// replaces the store with a prefix taken from another node's store, which
// by the same argument holds the same committed records at the same
// offsets. A stream snapshot written by an older version may carry records
// past its header's next; Restore cuts them off like the rest.
//
// # Durability of the two copies
//
// Records are written twice: into Raft's log (fsynced, the copy that makes
// an acknowledgement durable) and into the store. The store therefore
// defaults to logstore.SyncInterval every minute: a process crash loses
// nothing (page cache); a segment is fdatasynced when it is sealed, so
// after a machine crash only the active segment's tail can be torn or
// lost, and Open cuts a torn tail off; Raft re-applies what is missing from
// its log, which holds every entry after the latest snapshot (everything
// before it is in the snapshot's sealed segments, which logstore.Link
// fdatasyncs). A store that fails to open with ErrCorrupt is moved aside
// and rebuilt the same way: Raft restores the snapshot from its links. (Before, the store ran SyncNever,
// which does not sync a segment it seals: a sealed segment whose pages
// never reached the disk was not scanned at open and was found only when
// read.) With Config.StoreSyncSet the policy is the caller's, and under
// SyncNever that window is back.
//
// Raft's log and the store are both logstores, but they are not one: the store is numbered by record, Raft's log by entry (a batch,
// or a configuration change), and the store outlives Raft's compaction.
//
// # The catalogue rides the system group
//
// A node runs several Raft groups: the system group (this package's Log
// with Config.Meta set, Raft state in <DataDir>/raft, records in
// <DataDir>/log: the topic "default") and one group per partition it
// hosts. The system group also carries the catalogue of topics: a
// proposer's command (ProposeMeta) is an entry of its own type (meta.go)
// that the FSM hands to the MetaFSM instead of numbering records, so
// catalogue entries take no offsets. The MetaFSM's state is written into
// every snapshot header, captured on the FSM goroutine at the snapshot's
// index, and restored after the records are, so a node that restarts, or
// that joins after compaction and receives a snapshot, holds the catalogue
// as of the snapshot and then applies the entries after it exactly as the
// records: once each, in Raft order, the same on every node. Putting the
// catalogue on the system group rather than a group of its own keeps one
// bootstrap and one voter set, and a data dir of the single-log version is
// already that group.
//
// # Snapshots and retention
//
// Snapshots live in <DataDir>/raft/snapshots (snapshots.go), one directory
// each with meta.json and state.bin as hashicorp/raft's FileSnapshotStore
// lays them out. When the node takes one, the FSM seals the store's active
// segment and hard-links every sealed segment file into the snapshot
// (logstore.Link, which fdatasyncs them first): state.bin holds only the
// 44-byte header (next and lowest offset, time floor, CRC) and the
// catalogue's state (below), and meta.json lists the
// linked files with their sizes. Taking a snapshot therefore writes no
// record, whatever the store's size; each one starts a new store segment.
// Sealed segments are never written again, and the store is only ever cut
// at or past the latest snapshot's next, so linked bytes never change;
// retention deleting a segment removes the store's name for it, and the
// bytes go when the snapshot holding them is reaped (RetainSnapshots).
//
// A linked segment can rot. Damage at or past the latest snapshot heals on
// a restart (the store is cut back and Raft re-applies); damage below it,
// where Raft's log no longer has the record, is found when the record is
// read or a snapshot streams it (damage.go), and, with
// Config.FetchRecord, healed from a peer: the record's offset, time, key,
// headers and value come from the replicated entry, so the peer's copy
// encodes to the very frame that rotted, and logstore.Repair writes it in
// place, checked and fdatasynced, after checking that the stored frame is
// damaged and the copy has its length. The snapshot's link is the same
// inode, so it heals too.
//
// Opening a snapshot streams state.bin and then each linked file: the same
// stream as (*logstore.Log).Reader. A node that is behind the leader's
// compacted Raft log receives it through InstallSnapshot (written whole
// into state.bin), and logstore.Restore writes it into a fresh directory
// (verifying every frame's CRC), swaps it into place and the store is
// reopened. (Compaction keeps Config.TrailingLogs entries behind each
// snapshot, so a follower just behind gets entries rather than a snapshot.)
// Retention deletes store segments only; Raft's log is compacted
// by its own snapshots, so retention never removes an entry Raft still
// needs. A snapshot taken after retention carries only the retained
// segments, and a restored node starts at the same lowest offset.
//
// A byte that rots in a sealed segment below the latest snapshot is found
// when it is read (logstore.ErrCorrupt, DataLoss to clients) or when a
// snapshot holding it is sent: Open passes every snapshot stream through
// logstore.Verify on its way out (damage.go), so a damaged frame fails the
// transfer where it is instead of at the follower. Either way the node
// logs it once and, if it leads, hands leadership over, so that a follower
// needing a snapshot gets a good one from another node. The snapshot's link
// is the same file as the store's, so it heals with the store (above).
//
// # Failures
//
// If the store cannot write committed records (disk full, I/O error), the
// writer reopens it and writes them again, backing off up to 5 s between
// tries, until it succeeds: meanwhile applying waits once the writer's
// queue is full, reads of the unwritten records wait (and then time out
// saying why), and the node serves what it has; once space is freed it
// goes on by itself. Only a store that contradicts the records handed to
// it (ErrCorrupt) stops applying for good (ErrApplyFailed): a leader then
// hands leadership over, the node stops standing for election (its
// transport fails its own pre-vote and vote requests, so it raises no term
// and no one elects it, while it still replicates, votes and counts toward
// the quorum with its intact Raft log; only after five election timeouts
// without a leader does it stand, since its log may then be the only live
// one with every committed entry, and elected it hands leadership to a
// follower that raft's transfer catches up first), and a restart rebuilds
// the store from Raft's log (see above). An append whose entry left the
// leader but whose commit is unknown (leadership lost, ctx ended, or raft
// shut down: it answers ErrRaftShutdown even for entries it had committed
// but not yet applied) returns ErrUnknownOutcome: the record may or may not
// appear. A leader that is handing leadership over (a graceful shutdown, a
// partition's preferred leader) has raft refuse new entries before it logs
// them; AppendBatch waits the transfer out (an election timeout at most)
// and proposes again, so the append is acknowledged, or refused with
// *NotLeaderError naming the successor once leadership has moved, or, if
// ctx ends first, refused with ErrTimeout: never ErrUnknownOutcome.
// hashicorp/raft does
// not answer an entry's future if it shuts down while the entry waits for
// the FSM, so Close first refuses new appends and lets those under way
// finish (a second at most) before it stops raft, which answers the
// uncommitted rest with ErrLeadershipLost.
//
// A damaged Raft log is refused, never guessed at: hashicorp/raft panics
// when its log store fails to return an entry it reads while starting (the
// entries after the latest snapshot), so New first reads and checks those
// entries (raftStore.verify) and returns a *RaftLogCorruptError
// (ErrRaftLogCorrupt) naming the file and byte, as it does for damage the
// log's open refuses to repair.
//
// A full disk stops appends, not the node (disk.go). While the free space
// under DataDir is below Config.DiskReserve, or after a write to Raft's log
// failed with ENOSPC, AppendBatch refuses with ErrDiskFull before raft sees
// the entry; reads go on. The reserve keeps room for what must not fail:
// raft's own entries and the store writer catching up. A failed Raft log
// write makes raft step down (it answers that entry's future with the
// error, which AppendBatch reports as ErrUnknownOutcome and ErrDiskFull);
// the log, which refuses appends after a failed write, is reopened by the
// disk probe once space is back, and appends resume without a restart.
// The probes run each second in the background (for all of a node's
// groups at once when they share a DiskWatch, as proglog's system group
// and partitions do) and on appends when the last is stale.
// Raft's stable store never needs new space after it is created (two
// slots overwritten in place), so elections on a full disk cannot panic
// raft the way a failed "save current term" does.
//
// # Fault injection
//
// StreamLayer.Isolate cuts a node's Raft connections in both directions
// while its other traffic goes on; the partition tests use it, since tc
// netem does not work on the test machines.
package cluster
