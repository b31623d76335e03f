package client

import (
	"context"
	"errors"
	"net"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrUnknownOutcome wraps the cause when an append may or may not have
	// been written: the request left the client and no answer says which.
	// The client never retries such an append; the caller decides whether
	// a possible duplicate is acceptable.
	ErrUnknownOutcome = errors.New("client: outcome unknown, the records may or may not have been appended")
	// ErrRetriesExhausted wraps the last failure when every attempt a call
	// was allowed failed in a way that could be retried.
	ErrRetriesExhausted = errors.New("client: retries exhausted")
	// ErrClosed is returned by calls on a closed Client or Producer.
	ErrClosed = errors.New("client: closed")
	// ErrConfig is returned by New for an unusable Config.
	ErrConfig = errors.New("client: bad config")
	// ErrSequence is returned by Tail when a server sends a record out of
	// order (a gap or a step back), which a correct server never does.
	ErrSequence = errors.New("client: records out of sequence")
)

// verdict says what a failed call means for a retry.
type verdict int

const (
	final   verdict = iota // return the error as it is
	retry                  // nothing happened: try again, elsewhere if possible
	unknown                // an append may have happened: ErrUnknownOutcome
)

// notSent reports whether err happened before the request left the client:
// the connection could not even be opened.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// outcome returns the AppendOutcome detail a failed append's answer
// carries (OUTCOME_UNSPECIFIED when none): the server's word on what became
// of the records, which it puts on every failure of its produce handlers.
func outcome(ce *connect.Error) logv1.AppendOutcome_Outcome {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if o, ok := v.(*logv1.AppendOutcome); ok {
			return o.GetOutcome()
		}
	}
	return logv1.AppendOutcome_OUTCOME_UNSPECIFIED
}

// offsetRange returns the OffsetRange detail of an OutOfRange answer: the
// server's bounds when it answered.
func offsetRange(ce *connect.Error) (*logv1.OffsetRange, bool) {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if r, ok := v.(*logv1.OffsetRange); ok {
			return r, true
		}
	}
	return nil, false
}

// refused reports codes with which a server turns the request itself down:
// sending it again, anywhere, gets the same answer.
func refused(code connect.Code) bool {
	switch code {
	case connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeFailedPrecondition, connect.CodeOutOfRange,
		connect.CodeUnimplemented, connect.CodeNotFound, connect.CodeAlreadyExists:
		return true
	}
	return false
}

// classifyAppend says whether a failed append may be retried. ctx is the
// call's context.
func classifyAppend(ctx context.Context, err error) verdict {
	if notSent(err) {
		if ctx.Err() != nil {
			return final
		}
		return retry
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return unknown
	}
	if !connect.IsWireError(err) {
		switch ce.Code() {
		case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeCanceled,
			connect.CodeDeadlineExceeded, connect.CodeInternal, connect.CodeAborted:
			// The connection broke or ctx ended with the request out.
			return unknown
		}
		return final // refused by the client before sending (size, encoding)
	}
	o := outcome(ce)
	switch {
	case o == logv1.AppendOutcome_OUTCOME_UNKNOWN:
		return unknown
	case refused(ce.Code()):
		// Not applied, or refused before the server's handlers (which
		// mark nothing): either way nothing was written, and a retry
		// would be refused again.
		return final
	case o == logv1.AppendOutcome_OUTCOME_NOT_APPLIED:
		return retry
	}
	return unknown
}

// classifyRead says whether a failed read that names no offset may be
// retried (an OutOfRange answer is final).
func classifyRead(ctx context.Context, err error) verdict {
	if ctx.Err() != nil {
		return final
	}
	if notSent(err) {
		return retry
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeAborted, connect.CodeResourceExhausted,
		connect.CodeUnknown, connect.CodeInternal:
		return retry
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		// Not our ctx: a server shutting down, or a proxy's timeout.
		return retry
	}
	return final
}

// classifyReadAt says whether a failed read of offset may be retried: as
// classifyRead, and also when offset is past the answering server's end,
// which a lagging node gives for records others already have.
func classifyReadAt(ctx context.Context, err error, offset uint64) verdict {
	v := classifyRead(ctx, err)
	if v == final && ctx.Err() == nil && pastEnd(err, offset) {
		return retry
	}
	return v
}

// pastEnd reports an OutOfRange answer to a read of offset that lies at or
// beyond the server's end, by the bounds of its OffsetRange detail (not
// below its lowest retained offset, which no retry brings back).
func pastEnd(err error, offset uint64) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeOutOfRange {
		return false
	}
	r, ok := offsetRange(ce)
	return ok && offset >= r.GetNext()
}

// shouldRefresh reports failures that suggest the cluster's shape changed.
func shouldRefresh(err error) bool {
	if notSent(err) {
		return true
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return true
	}
	// Unavailable: a node down, or one that does not lead and could not
	// forward; or an append refused for a reason that may pass elsewhere.
	return ce.Code() == connect.CodeUnavailable ||
		(outcome(ce) == logv1.AppendOutcome_OUTCOME_NOT_APPLIED && !refused(ce.Code()))
}
