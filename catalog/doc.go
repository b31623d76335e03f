// Package catalog is the cluster's catalogue of topics: their settings and
// which nodes hold each partition. It is a deterministic state machine
// over commands that the system Raft group commits (cluster.MetaFSM): every
// node applies the same commands in the same order and so holds the same
// catalogue. Proposers validate a command against their view first; Apply
// validates again against the committed state, so of two racing creates
// of one name exactly one wins, on every node.
//
// It also holds the two pure functions placement rests on: Place, which
// spreads a topic's replicas over nodes, and PartitionForKey, which maps a
// record key to a partition the way Kafka's default partitioner does.
//
// # Determinism
//
// Apply's outcome, the new state and its Result, is a function of the
// state, the entry's index, the leader's proposal time and the command's
// bytes alone: it reads no clock, no randomness and no node setting, and
// iterates maps only to sort them. What could differ between nodes is
// carried in the command (the placement, chosen by the proposer) or taken
// from the entry (a topic's ID is its index, its Created the proposal
// time, kept as the bare instant so no node's location or monotonic clock
// leaks in). A refused command changes nothing but Index, on every node
// alike. Snapshots write topics in name order, and every encoding here
// has exactly one form for a value (shortest varints, no unknown bits),
// which the decoders insist on: equal states are equal bytes, and a
// restored state snapshots to the bytes it came from.
//
// # Encodings
//
// uvarint and varint are encoding/binary's (LEB128; varint zig-zags),
// in their shortest form. A string is a uvarint length and its bytes; a
// list is a uvarint count and its elements. A Config is uvarint
// RetentionBytes, varint RetentionAge (nanoseconds), uvarint
// MaxRecordBytes (at most 2^32-1).
//
// A command is one byte naming its type and format, then its fields; a
// new format would take a new byte:
//
//	0x01 CreateTopic  name, varint ReplicationFactor, Config,
//	                  list of partitions, each a list of node IDs
//	0x02 UpdateTopic  name, flags byte (bit 0 RetentionBytes, bit 1
//	                  RetentionAge, bit 2 MaxRecordBytes; others 0),
//	                  then the flagged settings, in that order, as in Config
//	0x03 DeleteTopic  name
//	0x04 SetReplicas  name, varint Partition, list of node IDs,
//	                  uvarint TopicID (0: any)
//
// A snapshot is:
//
//	byte    0x01, the format
//	uvarint Index
//	list of topics, in name order, each:
//	        name, uvarint ID, varint ReplicationFactor, Config,
//	        Created as varint Unix seconds and uvarint nanoseconds,
//	        list of partitions, each a flags byte (bit 0 System), its
//	        replicas and its initial replicas (Partition.Initial) as lists
//	        of node IDs (a partition's Index is its position)
//	4 bytes CRC32C (Castagnoli) of everything before, little-endian
//
// Restore refuses a snapshot whose checksum fails, that does not decode
// to its last byte, or that describes a state Apply could not have built.
package catalog
