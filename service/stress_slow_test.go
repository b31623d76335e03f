//go:build slow

package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Many tails follow one pipelined producer: every tail sees every record,
// in order, whatever its protocol and batch size; Shutdown then ends them
// all at once.
func TestManyTailsFollowOneProducer(t *testing.T) {
	const (
		tails   = 300
		records = 3000
	)
	e := newEnv(t, envOptions{})
	conns := make([]logv1connect.LogServiceClient, 12)
	for i := range conns {
		conns[i] = e.client(idReader, protocols[i%len(protocols)].opts...)
	}
	var wg, caughtUp sync.WaitGroup
	errs := make(chan error, tails)
	caughtUp.Add(tails)
	for i := range tails {
		client := conns[i%len(conns)]
		maxBatch := uint32(i % 3 * 50) // 0, 50, 100
		stream, err := client.ConsumeStream(t.Context(), &logv1.ConsumeStreamRequest{MaxBatch: maxBatch})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer stream.Close()
			caught := false
			defer func() {
				if !caught {
					caughtUp.Done()
				}
			}()
			next := uint64(0)
			for next < records && stream.Receive() {
				msg := stream.Msg()
				got := msg.GetRecords()
				if msg.GetRecord() != nil {
					got = []*logv1.Record{msg.GetRecord()}
				}
				for _, r := range got {
					if r.GetOffset() != next || string(r.GetValue()) != fmt.Sprint(next) {
						errs <- fmt.Errorf("tail %d: got %q at %d, want offset %d", i, r.GetValue(), r.GetOffset(), next)
						return
					}
					next++
				}
			}
			if next < records {
				errs <- fmt.Errorf("tail %d stopped at %d: %v", i, next, stream.Err())
				return
			}
			// Caught up: the tail now waits; Shutdown must end it.
			caught = true
			caughtUp.Done()
			if stream.Receive() {
				errs <- fmt.Errorf("tail %d: a record past the end", i)
				return
			}
			if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
				errs <- fmt.Errorf("tail %d ended with %v", i, stream.Err())
			}
		})
	}
	waitFor(t, "the tails to open", func() bool { return gauge(t, e.reg, "proglog_service_live_tails") == tails })

	ps, err := e.client(idRoot, connect.WithGRPC()).ProduceStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range records {
			if err := ps.Send(&logv1.ProduceStreamRequest{Record: rec(fmt.Sprint(i))}); err != nil {
				return
			}
		}
		_ = ps.CloseRequest()
	}()
	for i := range records {
		if _, err := ps.Receive(); err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
	}
	_ = ps.CloseResponse()
	caughtUp.Wait()
	e.stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
