// Package logstore is proglog's crash-safe, segmented commit log on local
// disk: records addressed by a dense uint64 offset, appended with group
// commit and read concurrently without taking the writer's lock.
//
// # Files
//
// A log directory holds segments. A segment is a store file of record frames
// and an index file, both named by the segment's base offset (its first
// record's offset) as 20 decimal digits, zero padded:
//
//	00000000000000000000.store  00000000000000000000.index
//	00000000000000004711.store  00000000000000004711.index
//
// The segment with the highest base is the active segment; it is the only
// one written. All others are sealed and never change until deleted whole,
// or until TruncateFrom cuts into one, which first deletes every newer
// segment and so makes it the active one again. A sealed segment may also
// have a time index, "<base>.timeindex" (see Time index). Other names in the
// directory (such as "<base>.store.broken", see below) are ignored, except
// "<base>.index.tmp" (an interrupted index rebuild), "<base>.store.tmp"
// (an interrupted upgrade, see Format versions) and "<base>.timeindex.tmp"
// (an interrupted seal), all removed on open, and "reset" (Reset's marker,
// see Truncation and reset). The directory is locked with flock while a
// Log has it open.
//
// All integers are little endian.
//
// # File header (both files, 32 bytes)
//
//	0   8  magic: "PLOGSTOR" (store) or "PLOGINDX" (index)
//	8   2  format version of the segment: 1 or 2 (see Format versions)
//	10  6  zero
//	16  8  base offset, equal to the one in the file name
//	24  4  CRC32C (Castagnoli) of bytes 0..23
//	28  4  zero
//
// # Format versions
//
// A segment's store and index headers carry its format version, which
// fixes its frames and index entries for life. New segments get version 2;
// version 1 is what versions before it wrote, and its segments stay
// version 1 and readable until deleted, so a log may mix both (sealed v1
// segments, then v2 ones; a snapshot stream too). The log only ever
// appends to a version 2 segment: when Open finds a version 1 active
// segment, it seals it (as a roll would) and starts a version 2 one after
// it; if that segment holds no record it keeps its base and its store is
// replaced by a version 2 header instead ("<base>.store.tmp", fsynced, then
// renamed over the store, so a crash leaves the old header or the new one;
// its index is removed and created again, as for any active segment).
// TruncateFrom does the same when it cuts into a version 1 segment.
//
// A version that knows only version 1 refuses a version 2 segment: its
// header check fails with "unsupported format version 2" and Open returns
// ErrCorrupt naming the file (for the active segment too: its store is
// longer than a header, or is exactly a header that is not the one it
// would write). The reset marker keeps a version 1 header, so that such a
// version still finishes a reset this one began.
//
// # Store: record frames, version 2
//
// After the header come frames, back to back, each starting at a multiple of
// 4 bytes:
//
//	0   4  uint32: bits 0..1 the type: 1 = a record of a value alone, 2 = a
//	       record with a key or headers; bits 2..31 the payload length n,
//	       below 1 GiB. A zero word is never written, so zero-filled space
//	       reads as "no record"; a type of 0 or 3 is damage.
//	4   4  the record's offset, its low 32 bits
//	8   8  the record's time, Unix nanoseconds
//	16  4  CRC32C (Castagnoli) of bytes 0..15 of the frame followed by the payload
//	20  n  payload
//	       zero padding to the next multiple of 4
//
// A record of 100 bytes takes 120 (v1: 128). The type sits in the low bits
// of the first byte so that no frame starts with 'P', the first byte of a
// store header (0x50, low bits 0): the snapshot stream relies on it. The
// offset is the low 32 bits of the record's own offset rather than its
// distance from the segment's base: the frame is encoded before the
// flush knows which segment it lands in (a batch may roll), and it tells a
// frame from another segment apart as well. Within a segment it is exact: a
// segment holds fewer than 2^32 records (records start below 4 GiB, a frame
// takes at least 20 bytes), and a frame found by a scan is taken to hold the
// first offset at or after the one expected with those low bits. A payload
// of exactly 1 GiB, which version 1 could hold, is refused with
// ErrRecordTooLarge.
//
// # Store: record frames, version 1
//
// Frames start at multiples of 8 bytes:
//
//	0   1  type, as above (0 never written)
//	1   3  zero
//	4   4  payload length n, at most 1 GiB
//	8   8  the record's offset
//	16  8  the record's time, Unix nanoseconds
//	24  4  CRC32C of bytes 0..23 of the frame followed by the payload
//	28  n  payload
//	       zero padding to the next multiple of 8
//
// # Both versions
//
// Config.MaxRecordBytes bounds new appends; records already written stay
// readable if it is lowered. No length read from disk is trusted to size an
// allocation beyond the bytes the file actually holds.
//
// A type 1 payload is the value. A type 2 payload is (uvarints as
// encoding/binary writes them):
//
//	uvarint key length, key
//	uvarint header count, then per header, in the order appended (keys may
//	  repeat): uvarint key length, key (UTF-8), uvarint value length, value
//	the value: the rest of the payload
//
// A record with neither key nor headers is always written as type 1, so a
// type 2 payload with an empty key and no headers is refused as damaged;
// frames written before type 2 existed are type 1 and read as records
// without key or headers. (A version older than type 2 refuses a store that
// holds one: "unknown frame type 2".)
//
// Because the CRC covers the offset and length, a frame read from the wrong
// place, a stale frame or a damaged length is detected, not served. Every
// read also checks that the frame fills exactly the extent the index gives it.
//
// The time is the one AppendRecords was given, or Config.Now when it was
// zero, raised to the latest time written if the clock went back, so that
// times stamped by the log never decrease. OffsetForTime relies on times not
// decreasing (see Time index).
//
// # Index: one entry per record
//
// After the header, entry i describes record base+i. Version 2, 4 bytes:
//
//	0   4  byte position of the record's frame in the store (never 0: the header is there)
//
// A record's frame extends to the next record's position or, for the last
// record, to the end of the records: readers of the active segment get that
// end together with the count of visible records (one atomic word), a
// sealed segment's is its store's size. So a read of any number of
// consecutive records is still one pread, and the frames' own lengths
// are checked against those extents. Version 1, 8 bytes:
//
//	0   4  byte position of the record's frame in the store
//	4   4  payload length
//
// The index is mmapped (golang.org/x/sys/unix). For the active segment the
// file is allocated ahead in 64 KiB steps with fallocate, so a full disk is
// a clean error rather than SIGBUS; its length and contents are not trusted
// after a crash. When a segment is sealed, the index is msynced, truncated
// to exactly header + entry size × records, and fsynced: from then on its
// length alone says how many records the segment holds.
//
// # Time index
//
// A sealed segment's "<base>.timeindex" samples its records' times, as
// Kafka's sparse .timeindex does, so that a lookup by time reads a few
// blocks instead of probing the store all over:
//
//	header, 32 bytes, as above with magic "PLOGTIME" and version 1 (the time
//	  index's own version, independent of the segment's format)
//	entries, 16 bytes each:
//	  0   8  the record's time, Unix nanoseconds
//	  8   4  the record's offset minus base
//	  12  4  byte position of the record's frame in the store
//	4 bytes: CRC32C of the entries
//
// The first record is sampled, then each record whose frame starts at least
// 32 KiB after the last sampled one: a 64 MiB segment gets about 2,000
// entries (32 KiB), whatever its records' sizes, and the frames between two
// samples take at most 32 KiB plus one frame. Positions alone decide, so the
// writer, Open's scan of the active segment and Restore sample a store alike.
// Entries must have rising offsets and positions and times that do not fall.
//
// The active segment keeps its samples in memory (Open's scan of it rebuilds
// them). Sealing writes the file as "<base>.timeindex.tmp", fsyncs it (not
// under SyncNever), and renames it into place after the store and index are
// sealed as described below and before the next segment is created, whose
// directory fsync covers the rename. A failure to write it is logged, not
// fatal. The samples then leave memory: a lookup maps a sealed segment's
// file on first use (one read of a few pages) and keeps the mapping until
// the segment is closed or deleted; nothing per record is kept.
//
// The file is an optimisation and is never trusted for an answer. A missing
// one (segments sealed before it existed, or by a version that could not
// write it, files lost in a crash) or one that fails a check (length,
// header, base, CRC, order, an entry past the segment's records) is
// ignored and not rebuilt, which would mean reading the whole store: lookups
// in that segment probe as described below. Open removes the
// active segment's time index (it describes a segment that is being
// written again: a crash after a seal, before the next segment was created,
// or during a truncation) and any without a store.
//
// OffsetForTime(t) picks the segment from the newest times of the sealed
// segments, which Open reads for age retention (the first whose newest
// record is at or after t; one whose last record is unreadable counts as
// new enough). In it, the last sample before t and the first at or after t
// bracket the answer; the frames from the one to the other are read with
// one pread (at most 256 KiB: past that the probe search below takes over)
// and walked by their lengths, checking each frame's offset. The walk also
// checks the bracket itself: the lower sample's record must be older than
// t, the upper one's not. If the frames contradict the samples (a stale or
// wrong file whose CRC still holds), the whole segment is searched without
// them. So a cold lookup reads the time index and one run of frames.
//
// Without usable samples the segment is searched by probing records: the
// time in the fixed part of one frame per probe, found through the index,
// first by interpolation and galloping, then by bisection (O(log n) reads
// of 20 or 28 bytes).
//
// Snapshots do not carry time indexes (Link links stores, the stream is
// stores); Restore builds one for every sealed segment from the frames it
// checks. Repair does not touch it: it rewrites a frame with the same
// record, whose time and position are the ones sampled.
//
// # What is synced when
//
//   - SyncAlways (default): each flush writes every queued frame with one
//     write and calls fdatasync on the store before any of those appends
//     returns and before readers can see the records. Concurrent appends
//     share the flush (group commit).
//   - SyncInterval: appends return after the write (page cache); fdatasync
//     runs every Config.SyncInterval. SyncNever: no fdatasync at all while
//     the log is open. Under both, records are visible when acknowledged; a
//     machine crash can take back what was not yet written back, a process
//     crash (kill -9) cannot, since the page cache survives it. Each MiB
//     written is handed to the kernel's write-back at once
//     (sync_file_range, SYNC_FILE_RANGE_WRITE: no wait, no durability
//     promise), so dirty pages do not pile up into a burst that stalls
//     every fdatasync on the disk, other logs' included.
//   - With Config.DropBehind set, under every policy, a flush then drops
//     from the page cache the pages more than that far behind the log's
//     end, across segments (posix_fadvise DONTNEED), in steps of 1 MiB and
//     a sealed segment's last ones at once. Only clean pages can be
//     dropped: under SyncAlways they were synced; under the others their
//     range is first written back with sync_file_range, waiting for those
//     pages only (handed to write-back that far back, so the wait is short;
//     still no durability promise). A read that lies wholly below what the
//     writer dropped drops the pages it read too, up to its last whole MiB
//     (or the drop's end), so a reader catching up does not fill the cache
//     with what it will not read again. None of it changes what is read or
//     when it is durable: a dropped page is read from the disk. Raft's logs
//     always drop behind (their entries are read back mostly near their
//     end); record stores do when the operator bounds their cache
//     (--page-cache-tail).
//   - Under SyncAlways and SyncInterval: sealing a segment fdatasyncs its
//     store, then msyncs, trims and fsyncs its index before the next segment
//     is created, and a new segment's store header is fdatasynced. Under
//     SyncNever the index is trimmed the same way but not synced, so after a
//     machine crash a sealed segment may be incomplete; Open then finds its
//     index and store disagree, rescans it, and fails with ErrCorrupt naming
//     it rather than serve a log with a hole. Log.Sync, whatever the policy,
//     fdatasyncs every sealed segment that was not synced (store, then
//     index) and the active store: replication calls it before Raft
//     compacts the entries the store is the only other copy of.
//   - Under every policy the directory is fsynced after a segment file is
//     created or removed, and Close fdatasyncs the active store. A time
//     index is fsynced when it is written (not under SyncNever) and never
//     by Log.Sync: losing one costs speed, not records.
//   - TruncateFrom and Reset: see Truncation and reset.
//   - A failed write or fsync puts the log in a failed state: appends return
//     ErrFailed until it is reopened. The fsync is never retried, because
//     Linux may have dropped the dirty pages it failed to write.
//
// # Recovery on Open
//
// Open does not scan sealed segments. For each it checks the store and
// index headers (the same version), that the index length is header plus
// whole entries, that the first entry points at byte 32 and the last
// record ends exactly at the store's size (version 1: by its entry's
// length; version 2: by the length in the fixed part of its frame, read
// for this), that each segment begins where the previous one ends, and it
// reads the last record (for its time, used by age retention). A sealed
// index that fails these checks is rebuilt from a strict scan of its store
// (every byte must be valid frames) and the rebuild is logged; if the store
// itself is damaged, Open fails with ErrCorrupt. One exception keeps
// version 2 on a par with version 1, whose index does not depend on the
// frames: when the scan finds every frame valid at the positions the index
// gives up to the last one, and the damage in that last frame, the index is
// kept and the damage is reported when that record is read.
//
// The active segment is scanned frame by frame and its index rebuilt. At the
// first frame that fails a check (zero or unknown type, length over the
// limit, wrong offset, frame past the end of file, CRC mismatch):
//
//   - if no valid frame (any later offset, every check passing) exists at
//     any aligned position after it (multiples of 4 in version 2, 8 in
//     version 1), it is a torn tail: the store is
//     truncated to the end of the last valid frame, fsynced, and the number
//     of dropped bytes is logged at Warn. The dropped bytes are kept in
//     "<base>.store.broken" (overwritten by a later repair of the same
//     segment; Open ignores it). Only records that were never
//     acknowledged under SyncAlways can be there.
//   - otherwise the damage is in the middle of the segment: Open fails with
//     a *CorruptError naming the store and the byte position. Nothing is
//     dropped silently; an operator must decide.
//
// A new active store of at most 32 bytes whose header is all zeros, or the
// start of exactly the header it should have (of either version: a crash
// while it was being created or upgraded), holds no record and gets a
// version 2 header written again. An index file without its store (a crash while deleting a segment,
// which removes the store first) is removed. A "reset" file is dealt with
// before anything else (see Truncation and reset).
//
// Damage in a sealed segment is found when read: Read, ReadBatch and ReadInto return
// a *CorruptError (errors.Is ErrCorrupt) naming the file and byte position,
// and the damaged record is never served; other records stay readable.
// ReadHeads checks only the fixed part of a frame whose value it does not
// read (32 KiB and more, Head.Checked false): damage in that value is found
// when the record is read.
//
// # Retention
//
// RetentionBytes and RetentionAge delete whole sealed segments, oldest first
// (never the active one): while the stores together exceed RetentionBytes,
// or while the oldest segment's newest record is older than RetentionAge by
// Config.Now. Retention runs on Open, after every roll, every minute and on
// EnforceRetention. TruncateBefore deletes segments whose records are all
// below an offset. A deletion unpublishes the segment, removes the time
// index, the store and then the index, and fsyncs the directory; readers
// still inside the segment finish first. Readers of deleted offsets get a *RangeError naming the
// lowest offset left.
//
// # Truncation and reset
//
// TruncateFrom(from) deletes the records at offsets >= from. Let k be the
// segment holding from (or starting at it). In this order:
//
//  1. Readers stop seeing the records: next drops to from and the newer
//     segments leave the published set (see Concurrency).
//  2. The segments newer than k are deleted newest first, each one time
//     index, store, then index, with a directory fsync after each, so an
//     older segment is never gone while a newer one is still on disk.
//  3. k's time index, if any, is removed (its samples below from stay in
//     memory, k being active again). Then k's store is truncated at the
//     frame of from (the byte where the record before it ends; that record
//     is read and checked first, so a damaged index entry cannot move the
//     cut) and fsynced (not under SyncNever).
//  4. k's index file is removed and created again, as for any active
//     segment (mapped, allocated ahead), filled with the kept entries; the
//     directory is fsynced. A new file rather than a truncated one, because
//     readers may still be in the old file's mapping.
//  5. If k is a version 1 segment, appends go to a version 2 one (see
//     Format versions): k is sealed and the next segment created, or, when
//     no record is kept, its store is replaced by a version 2 header.
//
// A crash at any point leaves a prefix of the old log at least [lowest, from):
// during 2 the newest remaining segment is intact and becomes the active one;
// from 3 on k is the newest segment, and the newest segment's index is never
// trusted on Open, which rebuilds it from the store: a store not yet cut
// still holds every record, a cut one exactly those below from. The store is
// the only thing that can bring records back, which is why it is cut first
// and, once it is cut and fsynced, no old frame survives beyond its end. The
// frames appended after the truncation overwrite nothing old: the file is
// shorter, they extend it. (Under SyncNever the cut is not fsynced, so after
// a machine crash, not a process crash, old frames may show again past new
// ones, as any unsynced write may be lost there.)
//
// Reset(next) leaves an empty log based at next, lower or higher than
// before (time indexes and temporary files go with the segments). Deleting
// the segments and creating "<next>.store" cannot be made
// safe by ordering alone: a crash with every segment gone and the new one
// not yet there would reopen as an empty log at offset 0, and the new empty
// segment beside old ones would break the "each segment begins where the
// previous one ends" check. So Reset first writes the file "reset" (a store
// file header, as above, whose base is next), fsyncs it and the directory:
// from then on the reset is decided. Then it deletes every segment file
// oldest first, fsyncs the directory, writes "<next>.store" (header only)
// and fsyncs it and the directory, and removes "reset" and fsyncs the
// directory. Deletion order does not matter for safety, since whatever is
// left, Open finishes the job: if "reset" holds a valid header it deletes
// every segment file, writes "<next>.store" and removes "reset", the same
// steps in the same order; if the header does not check out, the marker was
// torn by a crash before it was synced, when nothing had been deleted yet,
// and it is removed. So a crash during Reset leaves the old log or the new
// empty one, never a part.
//
// Appends queued but not flushed when either starts are flushed first and
// acknowledged at their offsets, as if they had returned just before the
// call, and being past the old end they are among the records deleted.
// Appends that queue while either runs wait for it and get offsets from the
// new end. A failed file operation puts the log in the failed state; a
// reopen then finds one of the states above.
//
// # Concurrency
//
// Appenders encode their frames under a short mutex, then the first to take
// the flush lock writes and syncs everything queued (group commit). Readers
// load an immutable snapshot of the segment set from an atomic pointer,
// take a reference on the segment and read with pread and the index mapping;
// they never take the writer's locks. The offset below which records are
// visible is published atomically after the data (and, under SyncAlways,
// the fdatasync) that covers it, and Wait is woken through a channel that is
// closed and replaced on every advance.
//
// TruncateFrom and Reset change next and the segment set together inside a
// sequence count (an epoch, odd while they change), so readers load a
// consistent pair; they do so before cutting or rewriting any byte. A read
// that began before finds the epoch moved when it is done and starts over,
// so it never returns bytes from a cut store or records past the new end; a
// snapshot stream from before fails with ErrOutOfRange. Segments deleted by
// a truncation are reference counted like those retention deletes.
//
// # Snapshot stream
//
// Log.Reader returns the retained log as one byte stream: each segment's
// store file, oldest first, from its header to the end of the records
// visible when Reader was called. A store header begins with 'P' (the
// magic), a frame never does (version 1: its type, 1 or 2; version 2: a
// byte whose low two bits are its type), so the stream splits back into
// segments and frames without any other framing, each segment's frames read
// in the version its header gives, and every frame carries its offset (or
// its low 32 bits) and CRC. Restore turns such a stream back into a log directory, checking
// every header and frame on the way.
//
// # Assumptions about the disk
//
//   - fdatasync returning nil means the written data (and file size) survive
//     power loss; a failed fsync may lose the pages it covered.
//   - A write may be torn at any byte after a crash, and pages of an
//     unsynced write may reach the disk in any order; synced data is not
//     torn afterwards, except by media failure, which the CRCs detect.
//   - Renames, creates and removes are durable after the directory fsync.
//   - A truncate is atomic (after a crash the file has its old or its new
//     size) and, once fsynced, its cut bytes do not come back; bytes
//     written past the new end later are new blocks, never old contents.
//   - Bit rot is detected (CRC32C), not repaired.
package logstore
