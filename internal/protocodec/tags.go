package protocodec

import "google.golang.org/protobuf/encoding/protowire"

// The one-byte tags (field number and wire type) of log.v1's record
// fields, as the plain encoding has them: for the codecs that write and
// read those messages' bytes themselves (the server's consume responses,
// Decoder's fast path).
const (
	TagRecord  = 1<<3 | byte(protowire.BytesType)  // ConsumeStreamResponse.record
	TagRecords = 2<<3 | byte(protowire.BytesType)  // ConsumeStreamResponse.records
	TagValue   = 1<<3 | byte(protowire.BytesType)  // Record.value
	TagOffset  = 2<<3 | byte(protowire.VarintType) // Record.offset
	TagKey     = 3<<3 | byte(protowire.BytesType)  // Record.key
	TagHeader  = 4<<3 | byte(protowire.BytesType)  // Record.headers
	TagTime    = 5<<3 | byte(protowire.BytesType)  // Record.time
	TagHKey    = 1<<3 | byte(protowire.BytesType)  // Header.key
	TagHValue  = 2<<3 | byte(protowire.BytesType)  // Header.value
	TagSeconds = 1<<3 | byte(protowire.VarintType) // Timestamp.seconds
	TagNanos   = 2<<3 | byte(protowire.VarintType) // Timestamp.nanos
)
