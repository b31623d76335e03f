package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"connectrpc.com/connect"
)

func TestClassify(t *testing.T) {
	dial := connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	wire := func(code connect.Code, msg string) error { return connect.NewWireError(code, errors.New(msg)) }
	local := func(code connect.Code, msg string) error { return connect.NewError(code, errors.New(msg)) }
	marked := func(code connect.Code, msg, outcome string) error {
		err := connect.NewWireError(code, errors.New(msg))
		err.Meta().Set(appendOutcomeHeader, outcome)
		return err
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name         string
		err          error
		ctx          context.Context
		append, read verdict
	}{
		{"dial refused", dial, nil, retry, retry},
		{"dial refused, ctx over", dial, cancelled, final, final},
		{"wrapped dial refused", fmt.Errorf("x: %w", dial), nil, retry, retry},
		{"no leader", marked(connect.CodeUnavailable, "cluster: not the leader, and no leader is known", appendOutcomeNotApplied), nil, retry, retry},
		{"stale leader", marked(connect.CodeUnavailable, `cluster: not the leader; the leader is "n2" at 127.0.0.1:1`, appendOutcomeNotApplied), nil, retry, retry},
		{"queue timeout", marked(connect.CodeUnavailable, "cluster: timed out queueing the entry", appendOutcomeNotApplied), nil, retry, retry},
		{"forward failed", marked(connect.CodeUnavailable, "forwarding to the leader failed: dial tcp 127.0.0.1:1: connect: connection refused", appendOutcomeUnknown), nil, unknown, retry},
		{"not leader by text only", wire(connect.CodeUnavailable, "cluster: not the leader"), nil, unknown, retry},
		{"not-applied on another code", marked(connect.CodeAborted, "x", appendOutcomeNotApplied), nil, retry, retry},
		{"unknown outcome", marked(connect.CodeUnavailable, "the write may or may not have been committed: cluster: outcome unknown: node is not the leader", appendOutcomeUnknown), nil, unknown, retry},
		{"shutting down", wire(connect.CodeUnavailable, "service: server shutting down"), nil, unknown, retry},
		{"server internal", wire(connect.CodeInternal, "boom"), nil, unknown, retry},
		{"server deadline", wire(connect.CodeDeadlineExceeded, "late"), nil, unknown, retry},
		{"invalid", wire(connect.CodeInvalidArgument, "record too large"), nil, final, final},
		{"too large", wire(connect.CodeResourceExhausted, "message too large"), nil, final, retry},
		{"denied", wire(connect.CodePermissionDenied, `subject "x" may not "produce"`), nil, final, final},
		{"unauthenticated", wire(connect.CodeUnauthenticated, "no certificate"), nil, final, final},
		{"past the end", wire(connect.CodeOutOfRange, "offset 9 is past the end of the log: the next offset is 3"), nil, final, retry},
		{"not retained", wire(connect.CodeOutOfRange, "offset 1 is no longer retained: the lowest offset is 3"), nil, final, final},
		{"connection lost", local(connect.CodeUnavailable, "http2: client connection lost"), nil, unknown, retry},
		{"ctx ended in flight", local(connect.CodeDeadlineExceeded, "context deadline exceeded"), cancelled, unknown, final},
		{"client-side size check", local(connect.CodeResourceExhausted, "message size exceeds sendMaxBytes"), nil, final, retry},
		{"not a connect error", errors.New("odd"), nil, unknown, retry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			if got := classifyAppend(ctx, tc.err); got != tc.append {
				t.Errorf("classifyAppend = %v, want %v", got, tc.append)
			}
			if got := classifyRead(ctx, tc.err); got != tc.read {
				t.Errorf("classifyRead = %v, want %v", got, tc.read)
			}
		})
	}
}
