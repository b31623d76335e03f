package client

import (
	"context"
	"errors"
	"net"
	"strings"

	"connectrpc.com/connect"
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

// The server marks a failed append with what became of its records
// (service.AppendOutcomeHeader; the names are repeated here so that the
// client does not import the server, and a test keeps them equal).
const (
	appendOutcomeHeader     = "Proglog-Append-Outcome"
	appendOutcomeNotApplied = "not-applied" // nothing was written: retry
	appendOutcomeUnknown    = "unknown"     // it may have been committed
)

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
	switch ce.Meta().Get(appendOutcomeHeader) {
	case appendOutcomeUnknown:
		return unknown
	case appendOutcomeNotApplied:
		return retry
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeFailedPrecondition, connect.CodeOutOfRange,
		connect.CodeUnimplemented, connect.CodeNotFound, connect.CodeAlreadyExists:
		return final
	}
	return unknown
}

// classifyRead says whether a failed read may be retried.
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
	case connect.CodeOutOfRange:
		if pastEnd(err) {
			return retry
		}
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		// Not our ctx: a server shutting down, or a proxy's timeout.
		return retry
	}
	return final
}

// pastEnd reports an OutOfRange answer for an offset at or beyond the
// server's end (the service says "past the end of the log"), which a lagging
// node gives for records others already have.
func pastEnd(err error) bool {
	var ce *connect.Error
	return errors.As(err, &ce) && ce.Code() == connect.CodeOutOfRange &&
		strings.Contains(strings.ToLower(ce.Message()), "past the end")
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
	return ce.Code() == connect.CodeUnavailable || ce.Meta().Get(appendOutcomeHeader) == appendOutcomeNotApplied
}
