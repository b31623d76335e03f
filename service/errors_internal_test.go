package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/logstore"
)

func TestToConnect(t *testing.T) {
	shutdownCtx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrShuttingDown)
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		code    connect.Code
		message string
	}{
		{"past the end", nil, fmt.Errorf("read: %w", &logstore.RangeError{Offset: 9, Lowest: 2, Next: 7}), connect.CodeOutOfRange, "the next offset is 7"},
		{"below lowest", nil, &logstore.RangeError{Offset: 1, Lowest: 2, Next: 7}, connect.CodeOutOfRange, "the lowest offset is 2"},
		{"bare out of range", nil, logstore.ErrOutOfRange, connect.CodeOutOfRange, ""},
		{"too large", nil, fmt.Errorf("%w: 9 bytes", logstore.ErrRecordTooLarge), connect.CodeInvalidArgument, "9 bytes"},
		{"corrupt", nil, &logstore.CorruptError{Path: "seg.store", Pos: 64, Reason: "crc"}, connect.CodeDataLoss, "seg.store"},
		{"closed", nil, logstore.ErrClosed, connect.CodeUnavailable, ""},
		{"failed", nil, fmt.Errorf("%w: disk full", logstore.ErrFailed), connect.CodeUnavailable, "disk full"},
		{"client left", context.Background(), context.Canceled, connect.CodeCanceled, ""},
		{"client deadline", context.Background(), context.DeadlineExceeded, connect.CodeDeadlineExceeded, ""},
		{"shutdown", shutdownCtx, context.Canceled, connect.CodeUnavailable, "shutting down"},
		{"unknown outcome", nil, fmt.Errorf("append: %w", cluster.ErrUnknownOutcome), connect.CodeUnavailable, "may or may not have been committed"},
		{"no leader known", nil, &cluster.NotLeaderError{}, connect.CodeUnavailable, "no leader is known"},
		{"leader known but not forwarded", nil, &cluster.NotLeaderError{LeaderID: "b", LeaderAddr: "10.0.0.2:8400"}, connect.CodeUnavailable, "10.0.0.2:8400"},
		{"raft queue timeout", nil, cluster.ErrTimeout, connect.CodeUnavailable, "timed out"},
		{"cluster closed", nil, cluster.ErrClosed, connect.CodeUnavailable, "closed"},
		{"apply failed", nil, fmt.Errorf("%w: disk full", cluster.ErrApplyFailed), connect.CodeUnavailable, "disk full"},
		{"disk full", nil, fmt.Errorf("%w: /data has 10 bytes free", cluster.ErrDiskFull), connect.CodeResourceExhausted, "disk full"},
		{"disk full while replicating", nil, fmt.Errorf("%w: %w: write: no space left on device", cluster.ErrUnknownOutcome, cluster.ErrDiskFull), connect.CodeResourceExhausted, "no space left"},
		{"slow consumer", nil, errSlowConsumer, connect.CodeResourceExhausted, "slow consumer"},
		{"connect error kept", nil, connect.NewError(connect.CodeAborted, errors.New("x")), connect.CodeAborted, ""},
		{"anything else", nil, errors.New("boom"), connect.CodeInternal, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := toConnect(ctx, tt.err)
			if connect.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want code %v with %q", err, tt.code, tt.message)
			}
		})
	}
	if toConnect(context.Background(), nil) != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

// Clients decide whether to retry an append on this header, not on text.
func TestToConnectAppendOutcome(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown outcome", fmt.Errorf("append: %w", cluster.ErrUnknownOutcome), AppendOutcomeUnknown},
		{"no leader known", &cluster.NotLeaderError{}, AppendOutcomeNotApplied},
		{"leader known but not forwarded", &cluster.NotLeaderError{LeaderID: "b", LeaderAddr: "10.0.0.2:8400"}, AppendOutcomeNotApplied},
		{"raft queue timeout", cluster.ErrTimeout, AppendOutcomeNotApplied},
		{"disk full, refused up front", cluster.ErrDiskFull, AppendOutcomeNotApplied},
		{"disk full while replicating", fmt.Errorf("%w: %w", cluster.ErrUnknownOutcome, cluster.ErrDiskFull), AppendOutcomeUnknown},
		{"forward failed on the way", forwardFailed(errors.New("connection reset")), AppendOutcomeUnknown},
		{"forward could not dial", forwardFailed(connect.NewError(connect.CodeUnavailable,
			&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})), AppendOutcomeNotApplied},
		{"apply failed", cluster.ErrApplyFailed, ""},
		{"log failed", logstore.ErrFailed, ""},
		{"too large", logstore.ErrRecordTooLarge, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ce *connect.Error
			if !errors.As(toConnect(context.Background(), tt.err), &ce) {
				t.Fatal("not a connect error")
			}
			if got := ce.Meta().Get(AppendOutcomeHeader); got != tt.want {
				t.Fatalf("%s = %q, want %q", AppendOutcomeHeader, got, tt.want)
			}
		})
	}
}

func TestActionFor(t *testing.T) {
	for _, tt := range []struct {
		path   string
		action string
		rpc    bool
	}{
		{"/log.v1.LogService/Produce", ActionProduce, true},
		{"/log.v1.LogService/ProduceStream", ActionProduce, true},
		{"/log.v1.LogService/ConsumeStream", ActionConsume, true},
		{"/log.v1.LogService/GetServers", ActionConsume, true},
		{"/log.v1.LogService/WhoAmI", "", true},
		{"/log.v1.LogService/Nope", "", true},
		{"/log.v1.LogService/./Produce", ActionProduce, true},
		{"/x/../log.v1.LogService/Produce", ActionProduce, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ActionAdmin, true},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ActionAdmin, true},
		{"/grpc.health.v1.Health/Check", "", true},
		{"/metrics", ActionAdmin, false},
		{"/metrics/", ActionAdmin, false},
		{"//metrics", ActionAdmin, false},
		{"/", "", false},
		{"/index.html", "", false},
	} {
		action, rpc := actionFor(tt.path)
		if action != tt.action || rpc != tt.rpc {
			t.Errorf("%s: action %q rpc %v, want %q %v", tt.path, action, rpc, tt.action, tt.rpc)
		}
	}
}
