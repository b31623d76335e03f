package service_test

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// testClock is the log's clock in these tests: records get the time it
// says, and a test moves it.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClockEnv(t *testing.T, c *testClock, cfg func(*service.Config)) *env {
	t.Helper()
	c.set(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	return newEnv(t, envOptions{logConfig: func(lc *logstore.Config) { lc.Now = c.now }, config: cfg})
}

func keyed(key string, value string, headers ...string) *logv1.Record {
	r := &logv1.Record{Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, &logv1.Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

// sameRecord compares a consumed record with the produced one, whose offset
// and time are given.
func sameRecord(t *testing.T, got, sent *logv1.Record, offset uint64, at time.Time) {
	t.Helper()
	want := proto.Clone(sent).(*logv1.Record)
	want.Offset, want.Time = offset, timestamppb.New(at)
	if !proto.Equal(got, want) {
		t.Fatalf("consumed %v, want %v", got, want)
	}
}

// TestRecordFieldsRoundTrip: key, headers (order and repeats kept) and the
// log's time come back from every read RPC, over every protocol, however
// the records were produced.
func TestRecordFieldsRoundTrip(t *testing.T) {
	var clock testClock
	e := newClockEnv(t, &clock, nil)
	sent := []*logv1.Record{
		keyed("user-1", "signed up", "trace", "abc", "trace", "def", "ü", "\xff"),
		keyed("", "no key", "h", ""),
		keyed("user-2", ""),
		keyed("", "plain"),
	}
	times := make([]time.Time, 0, 3*len(sent))
	var all []*logv1.Record
	for _, p := range protocols {
		c := e.client(idRoot, p.opts...)
		clock.add(time.Second)
		if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: sent[0]}); err != nil {
			t.Fatalf("%s: Produce: %v", p.name, err)
		}
		times = append(times, clock.now())
		clock.add(time.Second)
		if _, err := c.ProduceBatch(t.Context(), &logv1.ProduceBatchRequest{Records: sent[1:3]}); err != nil {
			t.Fatalf("%s: ProduceBatch: %v", p.name, err)
		}
		times = append(times, clock.now(), clock.now())
		if p.name != "grpcweb" { // gRPC-Web has no client streaming
			clock.add(time.Second)
			s, err := c.ProduceStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&logv1.ProduceStreamRequest{Record: sent[3]}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Receive(); err != nil {
				t.Fatalf("%s: ProduceStream: %v", p.name, err)
			}
			s.CloseRequest()
			s.CloseResponse()
			times = append(times, clock.now())
			all = append(all, sent...)
		} else {
			all = append(all, sent[:3]...)
		}
	}
	for _, p := range protocols {
		c := e.client(idRoot, p.opts...)
		for off, want := range all {
			resp, err := c.Consume(t.Context(), &logv1.ConsumeRequest{Offset: uint64(off)})
			if err != nil {
				t.Fatalf("%s: Consume(%d): %v", p.name, off, err)
			}
			sameRecord(t, resp.GetRecord(), want, uint64(off), times[off])
		}
		for _, batch := range []uint32{0, 3} {
			s, err := c.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{MaxBatch: batch})
			if err != nil {
				t.Fatal(err)
			}
			off := 0
			for off < len(all) && s.Receive() {
				recs := s.Msg().GetRecords()
				if r := s.Msg().GetRecord(); r != nil {
					recs = []*logv1.Record{r}
				}
				for _, r := range recs {
					sameRecord(t, r, all[off], uint64(off), times[off])
					off++
				}
			}
			if off < len(all) {
				t.Fatalf("%s: stream ended after %d records: %v", p.name, off, s.Err())
			}
			s.Close()
		}
	}
}

// TestReadFromTime: GetOffsetForTime, Consume and ConsumeStream from a
// time find the first record at or after it, also among equal times, and
// say clearly when there is none.
func TestReadFromTime(t *testing.T) {
	var clock testClock
	e := newClockEnv(t, &clock, nil)
	c := e.client(idRoot)
	t0 := clock.now()
	// Times t0, t0, t0+1s, t0+3s, t0+3s, t0+3s, t0+4s.
	steps := []time.Duration{0, 0, time.Second, 2 * time.Second, 0, 0, time.Second}
	for i, d := range steps {
		clock.add(d)
		if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: keyed("k", strings.Repeat("x", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		at   time.Duration
		want uint64
		none bool
	}{
		{"before the first", -time.Hour, 0, false},
		{"at a run of equal times", 0, 0, false},
		{"between records", 2 * time.Second, 3, false},
		{"the first of equal times", 3 * time.Second, 3, false},
		{"just after equal times", 3*time.Second + 1, 6, false},
		{"at the last", 4 * time.Second, 6, false},
		{"after the last", 5 * time.Second, 7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := timestamppb.New(t0.Add(tc.at))
			resp, err := c.GetOffsetForTime(t.Context(), &logv1.GetOffsetForTimeRequest{Time: at})
			if err != nil || resp.GetOffset() != tc.want || (resp.GetTime() == nil) != tc.none {
				t.Fatalf("GetOffsetForTime = %v, %v; want offset %d", resp, err, tc.want)
			}
			got, err := c.Consume(t.Context(), &logv1.ConsumeRequest{FromTime: at})
			if tc.none {
				if codeOf(err) != connect.CodeOutOfRange {
					t.Fatalf("Consume from a time after the last record: %v, want out_of_range", err)
				}
				return
			}
			if err != nil || got.GetRecord().GetOffset() != tc.want || !got.GetRecord().GetTime().AsTime().Equal(resp.GetTime().AsTime()) {
				t.Fatalf("Consume from time = %v, %v", got, err)
			}
			s, err := c.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromTime: at})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !s.Receive() || s.Msg().GetRecord().GetOffset() != tc.want {
				t.Fatalf("ConsumeStream from time: first %v, %v", s.Msg(), s.Err())
			}
		})
	}
	// A stream from a time after the last record follows new records.
	s, err := c.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromTime: timestamppb.New(t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clock.add(2 * time.Hour)
	if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: keyed("", "new")}); err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetRecord().GetOffset() != uint64(len(steps)) {
		t.Fatalf("stream from the future: %v, %v", s.Msg(), s.Err())
	}
}

func TestReadFromTimeRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(idRoot)
	bad := &timestamppb.Timestamp{Seconds: 1, Nanos: 2_000_000_000}
	now := timestamppb.Now()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"GetOffsetForTime without a time", func() error {
			_, err := c.GetOffsetForTime(t.Context(), &logv1.GetOffsetForTimeRequest{})
			return err
		}},
		{"GetOffsetForTime with an invalid time", func() error {
			_, err := c.GetOffsetForTime(t.Context(), &logv1.GetOffsetForTimeRequest{Time: bad})
			return err
		}},
		{"Consume with offset and time", func() error {
			_, err := c.Consume(t.Context(), &logv1.ConsumeRequest{Offset: 1, FromTime: now})
			return err
		}},
		{"ConsumeStream with from_end and time", func() error {
			s, err := c.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromEnd: true, FromTime: now})
			if err == nil {
				s.Receive()
				err = s.Err()
				s.Close()
			}
			return err
		}},
		{"ConsumeStream with an invalid time", func() error {
			s, err := c.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{FromTime: bad})
			if err == nil {
				s.Receive()
				err = s.Err()
				s.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); codeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("got %v, want invalid_argument", err)
			}
		})
	}
}

// TestRecordLimitsCountKeyAndHeaders: key and headers count toward the
// record limit, header keys are bounded, and a refused batch appends
// nothing.
func TestRecordLimitsCountKeyAndHeaders(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.MaxRecordBytes = 300 }})
	c := e.client(idRoot)
	long := strings.Repeat("k", service.MaxHeaderKeyBytes+1)
	for _, tc := range []struct {
		name string
		rec  *logv1.Record
		msg  string
	}{
		{"key counts", keyed(strings.Repeat("k", 200), strings.Repeat("v", 101)), "exceeds the limit of 300 bytes"},
		{"headers count", keyed("", strings.Repeat("v", 250), "h", strings.Repeat("x", 50)), "exceeds the limit of 300 bytes"},
		{"empty header key", keyed("", "v", "", "x"), "empty key"},
		{"long header key", keyed("", "v", long, "x"), "exceeds the limit of 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ProduceBatch(t.Context(), &logv1.ProduceBatchRequest{Records: []*logv1.Record{keyed("", "ok"), tc.rec}})
			if codeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want invalid_argument mentioning %q", err, tc.msg)
			}
			if _, next := e.log.Bounds(); next != 0 {
				t.Fatalf("a refused batch appended records: next is %d", next)
			}
		})
	}
	ok := keyed(strings.Repeat("k", 100), strings.Repeat("v", 100), "h", strings.Repeat("x", 99))
	if _, err := c.Produce(t.Context(), &logv1.ProduceRequest{Record: ok}); err != nil {
		t.Fatalf("a record of exactly the limit: %v", err)
	}
	if got, err := c.Consume(t.Context(), &logv1.ConsumeRequest{}); err != nil || !bytes.Equal(got.GetRecord().GetKey(), ok.Key) {
		t.Fatalf("Consume = %v, %v", got, err)
	}
}
