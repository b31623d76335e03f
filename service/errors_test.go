package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/cluster"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

const (
	notApplied = logv1.AppendOutcome_OUTCOME_NOT_APPLIED
	unknown    = logv1.AppendOutcome_OUTCOME_UNKNOWN
)

// failingLog is a real log whose appends fail with err.
type failingLog struct {
	*logstore.Log
	err error
}

func (f failingLog) AppendRecords(context.Context, []logstore.Record) (uint64, error) {
	return 0, f.err
}

// abortProduces serves produces in full (the leader appends the records)
// and then resets the stream instead of answering, as a leader that dies
// or loses its connection right after committing would.
func abortProduces(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/log.v1.LogService/Produce") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		panic(http.ErrAbortHandler)
	})
}

// follower starts a node that refuses appends as a follower of leader does
// and forwards them to it.
func follower(t *testing.T, leader *env, opts envOptions) *env {
	t.Helper()
	fwd, err := service.NewForwarder("follower", "127.0.0.1:1", nodeTLS(t, leader))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	config := opts.config
	opts.config = func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: leader.addr}
		c.Forward = fwd.Forward
		if config != nil {
			config(c)
		}
	}
	return newEnv(t, opts)
}

// appendOutcome returns the AppendOutcome detail of err; it fails the test
// unless there is exactly one.
func appendOutcome(t *testing.T, err error) logv1.AppendOutcome_Outcome {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%v: not a connect error", err)
	}
	var outcomes []logv1.AppendOutcome_Outcome
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("detail %s: %v", d.Type(), err)
		}
		switch v := v.(type) {
		case *logv1.AppendOutcome:
			outcomes = append(outcomes, v.GetOutcome())
		default:
			t.Fatalf("%v: unexpected detail %T", err, v)
		}
	}
	if len(outcomes) != 1 {
		t.Fatalf("%v: %d AppendOutcome details, want 1", err, len(outcomes))
	}
	if ce.Meta().Get("Proglog-Append-Outcome") != "" {
		t.Fatalf("%v: the retired Proglog-Append-Outcome header is still set", err)
	}
	return outcomes[0]
}

// offsetRange returns the OffsetRange detail of err; it fails the test
// unless there is exactly one.
func offsetRange(t *testing.T, err error) *logv1.OffsetRange {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeOutOfRange {
		t.Fatalf("%v: not OutOfRange", err)
	}
	if len(ce.Details()) != 1 {
		t.Fatalf("%v: %d details, want one OffsetRange", err, len(ce.Details()))
	}
	v, verr := ce.Details()[0].Value()
	r, ok := v.(*logv1.OffsetRange)
	if verr != nil || !ok {
		t.Fatalf("%v: detail %T, %v", err, v, verr)
	}
	return r
}

// produceCall is one way to append values, returning its error.
type produceCall struct {
	name string
	call func(context.Context, logv1connect.LogServiceClient, ...string) error
}

var produceCalls = []produceCall{
	{"Produce", func(ctx context.Context, c logv1connect.LogServiceClient, values ...string) error {
		_, err := c.Produce(ctx, &logv1.ProduceRequest{Record: rec(values[0])})
		return err
	}},
	{"ProduceBatch", func(ctx context.Context, c logv1connect.LogServiceClient, values ...string) error {
		req := &logv1.ProduceBatchRequest{}
		for _, v := range values {
			req.Records = append(req.Records, rec(v))
		}
		_, err := c.ProduceBatch(ctx, req)
		return err
	}},
	{"ProduceStream", produceStreamErr},
}

// produceStreamErr sends one request per value and returns the error that
// ends the stream; every request before the failing one must be
// acknowledged.
func produceStreamErr(ctx context.Context, c logv1connect.LogServiceClient, values ...string) error {
	stream, err := c.ProduceStream(ctx)
	if err != nil {
		return err
	}
	defer stream.CloseResponse()
	for _, v := range values {
		if err := stream.Send(&logv1.ProduceStreamRequest{Record: rec(v)}); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("send: %w", err)
		}
	}
	_ = stream.CloseRequest()
	for {
		if _, err := stream.Receive(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// Every failed produce carries an AppendOutcome detail whose value is what
// happened, over every protocol and every produce RPC, directly and through
// a follower that forwards to the leader.
func TestAppendOutcomeDetail(t *testing.T) {
	big := strings.Repeat("x", 17)
	small := envOptions{config: func(c *service.Config) { c.MaxRecordBytes = 16 }}
	direct := newEnv(t, small)
	noLeader := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log)}
	}})
	// A leader whose limit is below its follower's refuses what the
	// follower let through.
	strictLeader := newEnv(t, small)
	viaStrict := follower(t, strictLeader, envOptions{})
	// A leader whose Raft log write ran out of space: ResourceExhausted,
	// unknown, which a follower cannot infer from the code.
	fullLeader := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = failingLog{Log: c.Log.(*logstore.Log), err: fmt.Errorf("%w: %w", cluster.ErrUnknownOutcome, cluster.ErrDiskFull)}
	}})
	viaFull := follower(t, fullLeader, envOptions{})
	// A node that no longer leads answers a forwarded append with
	// Unavailable, not applied, which a follower cannot infer either.
	staleLeader := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Log = notLeaderLog{Log: c.Log.(*logstore.Log), leaderAddr: "127.0.0.1:1"}
	}})
	viaStale := follower(t, staleLeader, envOptions{})
	// A leader that appends and then breaks the connection.
	abortingLeader := newEnv(t, envOptions{server: func(c *service.ServerConfig) { c.Handler = abortProduces(c.Handler) }})
	viaAborting := follower(t, abortingLeader, envOptions{})

	for _, tt := range []struct {
		name   string
		node   *env
		values []string // the last one fails
		code   connect.Code
		want   logv1.AppendOutcome_Outcome
		leader *env // if set, holds the failed record afterwards
	}{
		{"record too large", direct, []string{"ok", big}, connect.CodeInvalidArgument, notApplied, nil},
		{"no leader known", noLeader, []string{"x"}, connect.CodeUnavailable, notApplied, nil},
		{"the leader refuses it", viaStrict, []string{big}, connect.CodeInvalidArgument, notApplied, nil},
		{"the leader's disk filled while replicating", viaFull, []string{"x"}, connect.CodeResourceExhausted, unknown, nil},
		{"the leader no longer leads", viaStale, []string{"x"}, connect.CodeUnavailable, notApplied, nil},
		{"the leader's connection breaks", viaAborting, []string{"x"}, connect.CodeUnavailable, unknown, abortingLeader},
	} {
		for _, proto := range protocols {
			for _, pc := range produceCalls {
				t.Run(fmt.Sprintf("%s/%s/%s", tt.name, proto.name, pc.name), func(t *testing.T) {
					values := tt.values
					if pc.name != "ProduceStream" {
						// Unary calls send the failing record alone; a
						// stream sends the others first, acknowledged.
						values = values[len(values)-1:]
					}
					var before uint64
					if tt.leader != nil {
						_, before = tt.leader.log.Bounds()
					}
					err := pc.call(t.Context(), tt.node.client(idRoot, proto.opts...), values...)
					if codeOf(err) != tt.code {
						t.Fatalf("got %v, want code %v", err, tt.code)
					}
					if got := appendOutcome(t, err); got != tt.want {
						t.Fatalf("%v: outcome %v, want %v", err, got, tt.want)
					}
					if tt.leader != nil {
						// Unknown was the truth: the leader has the record.
						if _, next := tt.leader.log.Bounds(); next != before+1 {
							t.Fatalf("the leader's log went from %d to %d records, want one more", before, next)
						}
					}
				})
			}
		}
	}
}

// Refusals before the handlers (the ACL here) carry no outcome; nothing
// was written for them, and clients go by their code.
func TestRefusedProduceHasNoOutcome(t *testing.T) {
	e := newEnv(t, envOptions{})
	err := produce(t.Context(), e, idReader)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodePermissionDenied || len(ce.Details()) != 0 {
		t.Fatalf("got %v, want PermissionDenied without details", err)
	}
}

// Every out-of-range read carries the log's bounds as an OffsetRange
// detail, over every protocol: past the end and below the lowest retained
// offset, for Consume and ConsumeStream.
func TestOffsetRangeDetail(t *testing.T) {
	e := newEnv(t, envOptions{logConfig: func(c *logstore.Config) { c.MaxSegmentBytes = 4096 }})
	client := e.client(idRoot)
	for i := range 12 {
		if _, err := client.Produce(t.Context(), &logv1.ProduceRequest{Record: rec(strings.Repeat(fmt.Sprint(i), 1000))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.log.TruncateBefore(10); err != nil {
		t.Fatal(err)
	}
	lowest, next := e.log.Bounds()
	if lowest == 0 {
		t.Fatal("nothing was truncated")
	}
	consumeStream := func(ctx context.Context, c logv1connect.LogServiceClient, offset uint64) error {
		stream, err := c.ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: offset})
		if err != nil {
			return err
		}
		defer stream.Close()
		if stream.Receive() {
			return fmt.Errorf("got %v, want an error", stream.Msg())
		}
		return stream.Err()
	}
	for _, proto := range protocols {
		c := e.client(idRoot, proto.opts...)
		for _, tt := range []struct {
			name   string
			offset uint64
			read   func(context.Context, logv1connect.LogServiceClient, uint64) error
		}{
			{"Consume past the end", next + 5, func(ctx context.Context, c logv1connect.LogServiceClient, offset uint64) error {
				_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: offset})
				return err
			}},
			{"Consume at the end", next, func(ctx context.Context, c logv1connect.LogServiceClient, offset uint64) error {
				_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: offset})
				return err
			}},
			{"Consume below the lowest", lowest - 1, func(ctx context.Context, c logv1connect.LogServiceClient, offset uint64) error {
				_, err := c.Consume(ctx, &logv1.ConsumeRequest{Offset: offset})
				return err
			}},
			{"ConsumeStream past the end", next + 1, consumeStream},
			{"ConsumeStream below the lowest", 0, consumeStream},
		} {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				r := offsetRange(t, tt.read(t.Context(), c, tt.offset))
				if r.GetLowest() != lowest || r.GetNext() != next {
					t.Fatalf("OffsetRange [%d, %d), want [%d, %d)", r.GetLowest(), r.GetNext(), lowest, next)
				}
			})
		}
	}
}
