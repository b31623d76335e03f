package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MetaFSM is the state the system group keeps beside its records: the
// catalogue of topics (catalog.Catalog). Its commands travel in the system
// group's Raft log as entries of their own type (entryMeta) and its state
// in the group's snapshots, so every node applies the same commands in the
// same order from the same state.
type MetaFSM interface {
	// Apply applies one committed command; index is its Raft index and at
	// the leader's clock when it proposed it, the same on every node. The
	// result goes back to ProposeMeta's caller. Apply must be
	// deterministic and must not block: it runs on Raft's FSM goroutine.
	Apply(index uint64, at time.Time, cmd []byte) any
	// Snapshot returns the state as bytes, on the FSM goroutine.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's bytes; nil or empty is
	// the initial state (a snapshot from before the catalogue existed).
	Restore(state []byte) error
}

// A catalogue entry (type 3):
//
//	0   1  type: 3
//	1   8  the leader's clock when it proposed the entry, Unix nanoseconds
//	9   -  the command, opaque here (MetaFSM.Apply decodes it)
//
// A node of an earlier version fails to decode it and applies nothing for
// it, as for any malformed entry: no records, no harm.
const entryMeta = 3

// ErrNoMeta: a catalogue command reached a Log that keeps no catalogue (a
// partition's group, not the system group).
var ErrNoMeta = errors.New("cluster: this raft group keeps no catalogue")

func encodeMeta(unixNano int64, cmd []byte) []byte {
	b := make([]byte, 0, 9+len(cmd))
	b = append(b, entryMeta)
	b = binary.LittleEndian.AppendUint64(b, uint64(unixNano))
	return append(b, cmd...)
}

// decodeMeta splits a type 3 entry; ok is false if b is not one.
func decodeMeta(b []byte) (at time.Time, cmd []byte, ok bool) {
	if len(b) < 9 || b[0] != entryMeta {
		return time.Time{}, nil, false
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:9]))), b[9:], true
}

// metaResult is the response of a catalogue entry.
type metaResult struct {
	resp any
	err  error
}

// ProposeMeta commits a catalogue command through the system group and
// returns what MetaFSM.Apply returned for it on this node, the leader.
// Like an append it fails with *NotLeaderError on a follower, and with
// ErrUnknownOutcome when the command may have been committed without this
// node learning its result (the proposer should then look at the
// catalogue rather than retry blindly).
func (l *Log) ProposeMeta(ctx context.Context, cmd []byte) (any, error) {
	if l.cfg.Meta == nil {
		return nil, ErrNoMeta
	}
	if err := l.leading(ctx); err != nil {
		return nil, err
	}
	resp, err := l.propose(ctx, encodeMeta(l.cfg.Now().UnixNano(), cmd))
	if err != nil {
		return nil, err
	}
	res, ok := resp.(metaResult)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected apply response %T", ErrUnknownOutcome, resp)
	}
	if res.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, res.err)
	}
	return res.resp, nil
}
