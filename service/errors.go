package service

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
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
		return withDetail(connect.NewError(connect.CodeOutOfRange, rangeMessage(re)),
			&logv1.OffsetRange{Lowest: re.Lowest, Next: re.Next})
	case errors.Is(err, logstore.ErrOutOfRange):
		return connect.NewError(connect.CodeOutOfRange, err)
	case errors.Is(err, logstore.ErrRecordTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, logstore.ErrCorrupt):
		return connect.NewError(connect.CodeDataLoss, err)
	case errors.Is(err, logstore.ErrClosed), errors.Is(err, ErrShuttingDown):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, cluster.ErrDiskFull):
		// The node refused the append up front or its Raft log write
		// failed for want of space (appendOutcome tells them apart).
		// Reads go on. Before ErrFailed: a Raft log write that ran out of
		// space leaves that log failed (until the disk probe reopens it),
		// and both are in the chain.
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, logstore.ErrFailed):
		// The log refuses writes until it is reopened: another node (or
		// this one after a restart) may take them, so Unavailable.
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, cluster.ErrUnknownOutcome):
		// Unavailable so clients retry, but say that a retry may write
		// the records twice.
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf(
			"the write may or may not have been committed (leadership changed or it timed out while replicating); a retry may duplicate it: %w", err))
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrTimeout):
		// ErrNotLeader is reached only when the append could not be
		// forwarded: no leader is known (an election is under way), or the
		// request was already forwarded once. ErrTimeout: Raft could not
		// even queue the entry. Nothing was written; a retry is safe.
		return connect.NewError(connect.CodeUnavailable, err)
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

// appendFailed is what a produce returns for err: toConnect's error,
// carrying an AppendOutcome detail that says what became of the records the
// caller has no acknowledgement for. An error that carries an outcome
// already (a leader's answer, forwardFailed's) keeps it; otherwise
// appendOutcome decides from err. Clients decide about retrying on that
// value, not on the code or the message.
func appendFailed(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	return withAppendOutcome(toConnect(ctx, err), appendOutcome(err))
}

// appendOutcome says what became of an append that failed with err: not
// applied only when the error proves nothing was written, unknown
// otherwise (see "Append outcomes" in doc.go).
func appendOutcome(err error) logv1.AppendOutcome_Outcome {
	switch {
	case errors.Is(err, cluster.ErrUnknownOutcome):
		// The entry left this node (for Raft, or to the leader) and may
		// commit; this comes first, as ErrDiskFull and ErrClosed may be
		// in its chain too.
		return logv1.AppendOutcome_OUTCOME_UNKNOWN
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrTimeout),
		errors.Is(err, cluster.ErrDiskFull), errors.Is(err, cluster.ErrClosed),
		errors.Is(err, logstore.ErrRecordTooLarge):
		// Refused before Raft saw the entry.
		return logv1.AppendOutcome_OUTCOME_NOT_APPLIED
	case errors.As(err, new(*NotHostedError)):
		// Not hosted here and not forwarded: nothing was sent.
		return logv1.AppendOutcome_OUTCOME_NOT_APPLIED
	}
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound,
		connect.CodePermissionDenied, connect.CodeUnauthenticated:
		// The request's own checks (record, records, pending, the
		// partition's choice) or its decoding, a topic or partition
		// that does not exist, the topic's ACL: nothing reached the log.
		return logv1.AppendOutcome_OUTCOME_NOT_APPLIED
	}
	// logstore.ErrClosed and ErrFailed among them: the append that met
	// the close or the failed write may have been written.
	return logv1.AppendOutcome_OUTCOME_UNKNOWN
}

// withAppendOutcome sets outcome on err's *connect.Error unless it carries
// an AppendOutcome already.
func withAppendOutcome(err error, outcome logv1.AppendOutcome_Outcome) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		ce = connect.NewError(connect.CodeUnknown, err)
		err = ce
	}
	if _, ok := outcomeOf(ce); !ok {
		withDetail(ce, &logv1.AppendOutcome{Outcome: outcome})
	}
	return err
}

// outcomeOf returns the AppendOutcome that ce carries, if any.
func outcomeOf(ce *connect.Error) (logv1.AppendOutcome_Outcome, bool) {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if o, ok := v.(*logv1.AppendOutcome); ok {
			return o.GetOutcome(), true
		}
	}
	return logv1.AppendOutcome_OUTCOME_UNSPECIFIED, false
}

// withDetail attaches msg to err as an error detail. Our messages always
// marshal; were one not to, err goes without it rather than failing.
func withDetail(err *connect.Error, msg proto.Message) *connect.Error {
	if d, derr := connect.NewErrorDetail(msg); derr == nil {
		err.AddDetail(d)
	}
	return err
}
