package service

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

// ErrShuttingDown is the cause of request contexts cancelled by
// Server.Shutdown; streams it ends report Unavailable so clients reconnect.
var ErrShuttingDown = errors.New("service: server shutting down")

// errSlowConsumer ends a stream whose client stopped accepting responses.
var errSlowConsumer = errors.New("service: slow consumer: client accepted no data within the timeout")

// toConnect maps an error from the log or the stream to a Connect error.
// It is the one place where log errors become RPC codes. ctx is the
// request's context, consulted to tell a shutdown from a client that left.
func toConnect(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	var re *logstore.RangeError
	switch {
	case errors.As(err, &re):
		return connect.NewError(connect.CodeOutOfRange, rangeMessage(re))
	case errors.Is(err, logstore.ErrOutOfRange):
		return connect.NewError(connect.CodeOutOfRange, err)
	case errors.Is(err, logstore.ErrRecordTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, logstore.ErrCorrupt):
		return connect.NewError(connect.CodeDataLoss, err)
	case errors.Is(err, logstore.ErrClosed), errors.Is(err, ErrShuttingDown):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, logstore.ErrFailed):
		// The log refuses writes until it is reopened: another node (or
		// this one after a restart) may take them, so Unavailable.
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, cluster.ErrDiskFull):
		// The node refused the append up front (nothing written: a retry
		// once space is freed is safe) or its Raft log write failed for
		// want of space (the outcome is unknown). Reads go on.
		outcome := AppendOutcomeNotApplied
		if errors.Is(err, cluster.ErrUnknownOutcome) {
			outcome = AppendOutcomeUnknown
		}
		return withAppendOutcome(connect.NewError(connect.CodeResourceExhausted, err), outcome)
	case errors.Is(err, cluster.ErrUnknownOutcome):
		// Unavailable so clients retry, but say that a retry may write
		// the records twice.
		return withAppendOutcome(connect.NewError(connect.CodeUnavailable, fmt.Errorf(
			"the write may or may not have been committed (leadership changed or it timed out while replicating); a retry may duplicate it: %w", err)),
			AppendOutcomeUnknown)
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrTimeout):
		// ErrNotLeader is reached only when the append could not be
		// forwarded: no leader is known (an election is under way), or the
		// request was already forwarded once. ErrTimeout: Raft could not
		// even queue the entry. Nothing was written; a retry is safe.
		return withAppendOutcome(connect.NewError(connect.CodeUnavailable, err), AppendOutcomeNotApplied)
	case errors.Is(err, cluster.ErrClosed), errors.Is(err, cluster.ErrApplyFailed):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, errSlowConsumer):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if ctx != nil && errors.Is(context.Cause(ctx), ErrShuttingDown) {
			return connect.NewError(connect.CodeUnavailable, ErrShuttingDown)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return connect.NewError(connect.CodeDeadlineExceeded, err)
		}
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func rangeMessage(re *logstore.RangeError) error {
	if re.Offset < re.Lowest {
		return fmt.Errorf("offset %d is no longer retained: the lowest offset is %d (next is %d)", re.Offset, re.Lowest, re.Next)
	}
	return fmt.Errorf("offset %d is past the end of the log: the next offset is %d (lowest is %d)", re.Offset, re.Next, re.Lowest)
}

func invalidArgument(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// AppendOutcomeHeader is set on a failed append's error (a response header
// or trailer, whatever the protocol) when the server knows what became of
// the records, so clients decide about retrying on a value, not on message
// text: AppendOutcomeNotApplied (nothing was written: retrying is safe) or
// AppendOutcomeUnknown (it may have been committed: a retry may duplicate).
const (
	AppendOutcomeHeader     = "Proglog-Append-Outcome"
	AppendOutcomeNotApplied = "not-applied"
	AppendOutcomeUnknown    = "unknown"
)

func withAppendOutcome(err *connect.Error, outcome string) *connect.Error {
	err.Meta().Set(AppendOutcomeHeader, outcome)
	return err
}
