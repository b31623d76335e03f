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
	logv1 "github.com/proglog/proglog/gen/log/v1"
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

// Every failed append says what became of its records; clients decide
// whether to retry on that detail, not on text.
func TestAppendFailedOutcome(t *testing.T) {
	const (
		notApplied = logv1.AppendOutcome_OUTCOME_NOT_APPLIED
		unknown    = logv1.AppendOutcome_OUTCOME_UNKNOWN
	)
	leaderSaid := func(code connect.Code, outcome logv1.AppendOutcome_Outcome) error {
		err := connect.NewWireError(code, errors.New("the leader's answer"))
		if outcome != logv1.AppendOutcome_OUTCOME_UNSPECIFIED {
			d, derr := connect.NewErrorDetail(&logv1.AppendOutcome{Outcome: outcome})
			if derr != nil {
				t.Fatal(derr)
			}
			err.AddDetail(d)
		}
		return err
	}
	shutdownCtx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrShuttingDown)
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		code connect.Code
		want logv1.AppendOutcome_Outcome
	}{
		{"invalid request", nil, invalidArgument("record is required"), connect.CodeInvalidArgument, notApplied},
		{"too large for the log", nil, fmt.Errorf("%w: 9 bytes", logstore.ErrRecordTooLarge), connect.CodeInvalidArgument, notApplied},
		{"unknown outcome", nil, fmt.Errorf("append: %w", cluster.ErrUnknownOutcome), connect.CodeUnavailable, unknown},
		{"shut down while replicating", nil, fmt.Errorf("%w: %w", cluster.ErrUnknownOutcome, cluster.ErrClosed), connect.CodeUnavailable, unknown},
		{"committed, not applied here", nil, fmt.Errorf("%w: %w", cluster.ErrUnknownOutcome, logstore.ErrClosed), connect.CodeUnavailable, unknown},
		{"no leader known", nil, &cluster.NotLeaderError{}, connect.CodeUnavailable, notApplied},
		{"leader known but not forwarded", nil, &cluster.NotLeaderError{LeaderID: "b", LeaderAddr: "10.0.0.2:8400"}, connect.CodeUnavailable, notApplied},
		{"raft queue timeout", nil, cluster.ErrTimeout, connect.CodeUnavailable, notApplied},
		{"cluster closed", nil, cluster.ErrClosed, connect.CodeUnavailable, notApplied},
		{"disk full, refused up front", nil, cluster.ErrDiskFull, connect.CodeResourceExhausted, notApplied},
		{"disk full while replicating", nil, fmt.Errorf("%w: %w", cluster.ErrUnknownOutcome, cluster.ErrDiskFull), connect.CodeResourceExhausted, unknown},
		{"apply failed", nil, cluster.ErrApplyFailed, connect.CodeUnavailable, unknown},
		{"log closed", nil, logstore.ErrClosed, connect.CodeUnavailable, unknown},
		{"log failed", nil, fmt.Errorf("%w: fdatasync: EIO", logstore.ErrFailed), connect.CodeUnavailable, unknown},
		{"slow consumer of acks", nil, errSlowConsumer, connect.CodeResourceExhausted, unknown},
		{"client left", context.Background(), context.Canceled, connect.CodeCanceled, unknown},
		{"shutdown", shutdownCtx, context.Canceled, connect.CodeUnavailable, unknown},
		{"anything else", nil, errors.New("boom"), connect.CodeInternal, unknown},
		{"forward failed on the way", nil, forwardFailed(errors.New("connection reset")), connect.CodeUnavailable, unknown},
		{"forward could not dial", nil, forwardFailed(connect.NewError(connect.CodeUnavailable,
			&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})), connect.CodeUnavailable, notApplied},
		{"leader said not applied", nil, forwardFailed(leaderSaid(connect.CodeUnavailable, notApplied)), connect.CodeUnavailable, notApplied},
		{"leader said unknown", nil, forwardFailed(leaderSaid(connect.CodeInvalidArgument, unknown)), connect.CodeInvalidArgument, unknown},
		{"leader's ACL refused", nil, forwardFailed(leaderSaid(connect.CodePermissionDenied, 0)), connect.CodePermissionDenied, notApplied},
		{"leader's message limit", nil, forwardFailed(leaderSaid(connect.CodeResourceExhausted, 0)), connect.CodeResourceExhausted, notApplied},
		{"leader said nothing else", nil, forwardFailed(leaderSaid(connect.CodeInternal, 0)), connect.CodeInternal, unknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := appendFailed(ctx, tt.err)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != tt.code {
				t.Fatalf("got %v, want code %v", err, tt.code)
			}
			if got, ok := outcomeOf(ce); !ok || got != tt.want {
				t.Fatalf("outcome %v (present %v), want %v", got, ok, tt.want)
			}
			if n := len(ce.Details()); n != 1 {
				t.Fatalf("%d details, want one AppendOutcome", n)
			}
			if len(ce.Meta()) != 0 {
				t.Fatalf("metadata %v: the outcome travels as a detail only", ce.Meta())
			}
		})
	}
	if appendFailed(context.Background(), nil) != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

// Reads out of range carry the bounds as a detail, and no append outcome.
func TestToConnectOffsetRange(t *testing.T) {
	for _, re := range []*logstore.RangeError{
		{Offset: 9, Lowest: 2, Next: 7},
		{Offset: 1, Lowest: 2, Next: 7},
		{Offset: 0, Lowest: 0, Next: 0},
	} {
		var ce *connect.Error
		if !errors.As(toConnect(context.Background(), fmt.Errorf("read: %w", re)), &ce) || ce.Code() != connect.CodeOutOfRange {
			t.Fatalf("%v: not OutOfRange", re)
		}
		if len(ce.Details()) != 1 {
			t.Fatalf("%v: %d details, want one OffsetRange", re, len(ce.Details()))
		}
		v, err := ce.Details()[0].Value()
		if err != nil {
			t.Fatal(err)
		}
		r, ok := v.(*logv1.OffsetRange)
		if !ok || r.GetLowest() != re.Lowest || r.GetNext() != re.Next {
			t.Fatalf("%v: detail %T %v", re, v, v)
		}
	}
	for _, err := range []error{cluster.ErrTimeout, &cluster.NotLeaderError{}, cluster.ErrDiskFull} {
		var ce *connect.Error
		if errors.As(toConnect(context.Background(), err), &ce) && len(ce.Details()) != 0 {
			t.Fatalf("%v: toConnect attached %d details; only produces carry an outcome", err, len(ce.Details()))
		}
	}
}

func TestAccessFor(t *testing.T) {
	const cluster = true
	for _, tt := range []struct {
		path    string
		actions string // the actions, comma-separated
		cluster bool
		rpc     bool
	}{
		{"/log.v1.LogService/Produce", ActionProduce, false, true},
		{"/log.v1.LogService/ProduceStream", ActionProduce, false, true},
		{"/log.v1.LogService/ConsumeStream", ActionConsume, false, true},
		{"/log.v1.LogService/GetServers", ActionConsume, false, true},
		{"/log.v1.LogService/GetOffsetForTime", ActionConsume, false, true},
		{"/log.v1.LogService/ListTopics", "consume,produce", false, true},
		{"/log.v1.LogService/DescribeTopic", ActionConsume, false, true},
		{"/log.v1.LogService/CreateTopic", ActionAdmin, false, true},
		{"/log.v1.LogService/DeleteTopic", ActionAdmin, false, true},
		{"/log.v1.LogService/MovePartition", ActionAdmin, false, true},
		{"/log.v1.LogService/RemoveNode", ActionAdmin, cluster, true},
		{"/log.v1.LogService/WhoAmI", "", false, true},
		{"/log.v1.LogService/Nope", "", false, true},
		{"/log.v1.LogService/./Produce", ActionProduce, false, true},
		{"/x/../log.v1.LogService/Produce", ActionProduce, false, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ActionAdmin, cluster, true},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ActionAdmin, cluster, true},
		{"/grpc.health.v1.Health/Check", "", false, true},
		{"/metrics", ActionAdmin, cluster, false},
		{"/metrics/", ActionAdmin, cluster, false},
		{"//metrics", ActionAdmin, cluster, false},
		{"/", "", false, false},
		{"/index.html", "", false, false},
	} {
		a, rpc := accessFor(tt.path)
		if got := strings.Join(a.actions, ","); got != tt.actions || a.cluster != tt.cluster || rpc != tt.rpc {
			t.Errorf("%s: actions %q cluster %v rpc %v, want %q %v %v", tt.path, got, a.cluster, rpc, tt.actions, tt.cluster, tt.rpc)
		}
	}
}
