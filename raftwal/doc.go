// Package raftwal keeps the Raft logs of many groups on one node in one
// write-ahead log: the entries that groups store at the same time go to
// disk in one write and one fdatasync, where logs of their own would cost
// a write and an fdatasync each.
//
// Three nodes hosting twelve partitions of three replicas each ran 36 Raft
// logs, each fdatasynced on its own; on one disk each fdatasync is a cache
// flush, and the flushes, not the cores, bounded what the partitions
// together took (docs/benchmarks.md, "One Raft log per node").
// hashicorp/raft calls StoreLogs from each group's own goroutine; here those calls meet in one
// logstore.Log under SyncAlways, whose committer writes whatever is queued
// with one write and one fdatasync (group commit), so the flushes follow
// the disk's pace, not the number of groups.
//
// # Records
//
// The WAL is a logstore.Log (CRC-checked frames, torn tails cut at open);
// each of its records is one of (integers little endian or unsigned
// varints, "uv"):
//
//	kind: 1 byte            5 entry, 6 truncate from, 7 truncate before, 8 reset
//	name: uv length, bytes  the log's directory relative to Config.Root
//	incarnation: 8 bytes    the directory's incarnation (its wal-id file)
//	index: uv               the entry's index, or the index a truncation names
//	header CRC: 4 bytes     CRC-32C of kind..index
//	entry only: the entry's bytes, to the record's end
//
// Kinds 1 to 4 are the same records without the header CRC, as WALs
// written before it hold them; they are still read. Open rebuilds the
// logs' states from the records' heads (logstore.Log.ReadHeads): a large
// record's entry bytes are not read, so its frame CRC is not checked
// there, and the header CRC is what keeps a damaged header from giving an
// entry to another log (a record of kinds 1 to 4 whose frame was not read
// whole is read whole). Raft's reads of an entry check its frame CRC as
// before.
//
// A StoreLogs of n entries is n consecutive records written by one
// append: one write and one fdatasync, shared with the appends of other
// logs that the WAL's committer takes in the same batch. A record per
// entry lets a read fetch (and CRC-check) just that entry, as a log of the
// group's own would. The entry's bytes are the raft.Log as the cluster
// package encodes it (cluster/raftstore.go); this package does not look
// inside them.
//
// # A log's state, and why a reopened WAL shows the same logs
//
// Each log's state is the range lowest..next-1 and, for the records still
// holding its live entries, spans (first index, count, the first record's
// WAL offset: runs of consecutive records holding consecutive entries). A record is applied to its log's state only after the WAL has
// made it durable, and every change to a state is a record (except the
// renumbering of an empty log: below), so the states are a function of the
// durable records. Open replays the records, oldest first, through the same
// rules (state.go):
//
//   - entry at index i: if the log is empty, or i is outside lowest..next,
//     the log restarts at i (a Raft log store's Reset: the first entry
//     after an installed snapshot); if i is below next, the entries from i
//     on are dropped (a conflicting tail a new leader overwrites); then i
//     is the log's last entry. An append of n entries applies as n such
//     records would, one after the other.
//   - truncate from i: drop i and after (i ≤ lowest: the log is empty at i).
//   - truncate before i: drop below i (i ≥ next: the log is empty).
//   - reset i: the log is empty, the next entry is i.
//
// A log's writes hold its write lock across the append, so its records are
// in the WAL in the order its state applied them. A record whose append
// failed was never applied; Recover cuts whatever a failed append left
// past the last acknowledged record before the WAL takes appends again,
// so a later replay does not find it either.
//
// The numbering of an empty log does not survive a reopen (its records may
// be deleted, and Reset of an empty log writes none): an empty log opens at
// whatever its surviving records say, or 0..0. Raft cannot tell: an empty
// log store answers 0 for its first and last index whatever its numbering,
// and the next StoreLogs restarts it at its first entry.
//
// # Deleting segments, and idle groups
//
// The WAL deletes whole segments (logstore.TruncateBefore) below the
// oldest record that any log still needs: the first span of each log.
// Raft compacts a busy group's log after each snapshot, which moves that
// group's first span forward. An idle group's few entries would hold every
// segment written after them, so Compact writes the entries of the logs
// holding the oldest segment again at the end (which replays to the same
// state: an entry at lowest replaces the whole log, and the ones after it
// follow), once the WAL has more than two segments and each of those
// logs holds at most an eighth of a segment, or whatever they hold once
// more than half of the WAL is records no log needs (a group that went
// idle after a burst keeps its trailing entries until its next snapshot,
// which may never come). Otherwise a busy log holding the oldest segment
// is left to its own compaction.
//
// # Groups removed
//
// A log is named by its directory and that directory's incarnation: 8
// random bytes in <dir>/wal-id, written (and fsynced) when the directory
// first opens its log here. Removing a group removes its directory; a
// group created again in a directory of the same name gets a new
// incarnation, so the old group's records are not taken for its. Compact
// forgets the logs that are not open and whose directory is gone or holds
// another incarnation; their records then hold no segment.
package raftwal
