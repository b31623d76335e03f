package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func TestClassify(t *testing.T) {
	const (
		notApplied = logv1.AppendOutcome_OUTCOME_NOT_APPLIED
		unknownOut = logv1.AppendOutcome_OUTCOME_UNKNOWN
	)
	dial := connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	wire := func(code connect.Code, msg string, details ...proto.Message) error {
		t.Helper()
		err := connect.NewWireError(code, errors.New(msg))
		for _, m := range details {
			d, derr := connect.NewErrorDetail(m)
			if derr != nil {
				t.Fatal(derr)
			}
			err.AddDetail(d)
		}
		return err
	}
	marked := func(code connect.Code, msg string, o logv1.AppendOutcome_Outcome) error {
		t.Helper()
		return wire(code, msg, &logv1.AppendOutcome{Outcome: o})
	}
	ranged := func(lowest, next uint64) error {
		t.Helper()
		return wire(connect.CodeOutOfRange, "offset out of range", &logv1.OffsetRange{Lowest: lowest, Next: next})
	}
	headerOnly := connect.NewWireError(connect.CodeUnavailable, errors.New("cluster: not the leader"))
	headerOnly.Meta().Set("Proglog-Append-Outcome", "not-applied")
	local := func(code connect.Code, msg string) error { return connect.NewError(code, errors.New(msg)) }
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name         string
		err          error
		ctx          context.Context
		offset       uint64 // of the read
		append, read verdict
	}{
		{"dial refused", dial, nil, 0, retry, retry},
		{"dial refused, ctx over", dial, cancelled, 0, final, final},
		{"wrapped dial refused", fmt.Errorf("x: %w", dial), nil, 0, retry, retry},
		{"no leader", marked(connect.CodeUnavailable, "cluster: not the leader, and no leader is known", notApplied), nil, 0, retry, retry},
		{"stale leader", marked(connect.CodeUnavailable, `cluster: not the leader; the leader is "n2" at 127.0.0.1:1`, notApplied), nil, 0, retry, retry},
		{"queue timeout", marked(connect.CodeUnavailable, "cluster: timed out queueing the entry", notApplied), nil, 0, retry, retry},
		{"forward never dialed", marked(connect.CodeUnavailable, "forwarding to the leader failed before sending; nothing was written", notApplied), nil, 0, retry, retry},
		{"forward failed", marked(connect.CodeUnavailable, "forwarding to the leader failed; the write may or may not have been committed", unknownOut), nil, 0, unknown, retry},
		{"not leader by text only", wire(connect.CodeUnavailable, "cluster: not the leader"), nil, 0, unknown, retry},
		{"the retired header is ignored", headerOnly, nil, 0, unknown, retry},
		{"not applied on another code", marked(connect.CodeAborted, "x", notApplied), nil, 0, retry, retry},
		{"unknown outcome", marked(connect.CodeUnavailable, "the write may or may not have been committed: cluster: outcome unknown", unknownOut), nil, 0, unknown, retry},
		{"disk full up front", marked(connect.CodeResourceExhausted, "cluster: disk full", notApplied), nil, 0, final, retry},
		{"disk full while replicating", marked(connect.CodeResourceExhausted, "cluster: outcome unknown: cluster: disk full", unknownOut), nil, 0, unknown, retry},
		{"invalid, not applied", marked(connect.CodeInvalidArgument, "record of 17 bytes exceeds the limit of 16 bytes", notApplied), nil, 0, final, final},
		{"shutting down", wire(connect.CodeUnavailable, "service: server shutting down"), nil, 0, unknown, retry},
		{"server internal", wire(connect.CodeInternal, "boom"), nil, 0, unknown, retry},
		{"server deadline", wire(connect.CodeDeadlineExceeded, "late"), nil, 0, unknown, retry},
		{"invalid", wire(connect.CodeInvalidArgument, "record too large"), nil, 0, final, final},
		{"too large", wire(connect.CodeResourceExhausted, "message too large"), nil, 0, final, retry},
		{"denied", wire(connect.CodePermissionDenied, `subject "x" may not "produce"`), nil, 0, final, final},
		{"unauthenticated", wire(connect.CodeUnauthenticated, "no certificate"), nil, 0, final, final},
		{"past the end", ranged(3, 7), nil, 9, final, retry},
		{"at the end", ranged(3, 7), nil, 7, final, retry},
		{"past the end of an empty log", ranged(0, 0), nil, 0, final, retry},
		{"not retained", ranged(3, 7), nil, 1, final, final},
		{"wrapped past the end", fmt.Errorf("client: Consume 9 on x: %w", ranged(3, 7)), nil, 9, final, retry},
		{"past the end, ctx over", ranged(3, 7), cancelled, 9, final, final},
		{"past the end by text only", wire(connect.CodeOutOfRange, "offset 9 is past the end of the log: the next offset is 3"), nil, 9, final, final},
		{"connection lost", local(connect.CodeUnavailable, "http2: client connection lost"), nil, 0, unknown, retry},
		{"ctx ended in flight", local(connect.CodeDeadlineExceeded, "context deadline exceeded"), cancelled, 0, unknown, final},
		{"client-side size check", local(connect.CodeResourceExhausted, "message size exceeds sendMaxBytes"), nil, 0, final, retry},
		{"not a connect error", errors.New("odd"), nil, 0, unknown, retry},
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
			if got := classifyReadAt(ctx, tc.err, tc.offset); got != tc.read {
				t.Errorf("classifyReadAt = %v, want %v", got, tc.read)
			}
			// A read that names no offset never counts as past the end.
			want := tc.read
			if connect.CodeOf(tc.err) == connect.CodeOutOfRange {
				want = final
			}
			if got := classifyRead(ctx, tc.err); got != want {
				t.Errorf("classifyRead = %v, want %v", got, want)
			}
		})
	}
}

func TestShouldRefresh(t *testing.T) {
	marked := func(code connect.Code, o logv1.AppendOutcome_Outcome) error {
		t.Helper()
		err := connect.NewWireError(code, errors.New("x"))
		d, derr := connect.NewErrorDetail(&logv1.AppendOutcome{Outcome: o})
		if derr != nil {
			t.Fatal(derr)
		}
		err.AddDetail(d)
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"dial refused", connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"unavailable", connect.NewWireError(connect.CodeUnavailable, errors.New("x")), true},
		{"not applied, may pass elsewhere", marked(connect.CodeAborted, logv1.AppendOutcome_OUTCOME_NOT_APPLIED), true},
		{"not applied, refused", marked(connect.CodeInvalidArgument, logv1.AppendOutcome_OUTCOME_NOT_APPLIED), false},
		{"out of range", connect.NewWireError(connect.CodeOutOfRange, errors.New("x")), false},
	} {
		if got := shouldRefresh(tc.err); got != tc.want {
			t.Errorf("%s: shouldRefresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}
