package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/proglog/proglog/cluster"
)

type produceIn struct{ value string }
type produceOut struct {
	offset  uint64
	unknown bool // the outcome is unknown (timed out, leadership lost)
}
type consumeIn struct{ offset uint64 }
type consumeOut struct{ value string }

// logModel: the state is the sequence of produced values. A produce appends
// and returns the new record's offset; a consume (which waits for its
// offset to be committed) returns the value at that offset.
var logModel = porcupine.Model{
	Init: func() any { return []string(nil) },
	Step: func(state, input, output any) (bool, any) {
		st := state.([]string)
		switch in := input.(type) {
		case produceIn:
			out := output.(produceOut)
			if !out.unknown && out.offset != uint64(len(st)) {
				return false, st
			}
			return true, append(slices.Clip(st), in.value)
		case consumeIn:
			out := output.(consumeOut)
			return in.offset < uint64(len(st)) && st[in.offset] == out.value, st
		}
		return false, st
	},
	Equal: func(a, b any) bool { return slices.Equal(a.([]string), b.([]string)) },
	DescribeOperation: func(input, output any) string {
		switch in := input.(type) {
		case produceIn:
			return fmt.Sprintf("produce(%s) -> %+v", in.value, output)
		case consumeIn:
			return fmt.Sprintf("consume(%d) -> %+v", in.offset, output)
		}
		return "?"
	},
}

// history collects operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex // guards ops, acked
	ops   []porcupine.Operation
	acked map[uint64]string // acknowledged produces
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	if in, ok := op.Input.(produceIn); ok {
		if out := op.Output.(produceOut); !out.unknown {
			h.acked[out.offset] = in.value
		}
	}
}

// ackedSince reports whether a produce called at or after t was acknowledged.
func (h *history) ackedSince(t int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		if out, ok := op.Output.(produceOut); ok && !out.unknown && op.Call >= t {
			return true
		}
	}
	return false
}

func (h *history) ackedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.acked)
}

// leaderOf finds a live leader among logs (closed logs report no leadership).
func leaderOf(logs []*cluster.Log) *cluster.Log {
	for _, l := range logs {
		if l.IsLeader() {
			return l
		}
	}
	return nil
}

// producer appends single records through the leader until ctx ends.
// A refusal (not the leader, closed, queue timeout) means nothing was
// written, so the operation is left out of the history; an unknown outcome
// is recorded as an operation that never returned.
func producer(ctx context.Context, id int, logs func() []*cluster.Log, h *history) {
	for i := 0; ctx.Err() == nil; i++ {
		l := leaderOf(logs())
		if l == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		value := fmt.Sprintf("p%d-%d", id, i)
		call := h.now()
		actx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		off, err := l.Append(actx, []byte(value))
		cancel()
		switch {
		case err == nil:
			h.add(porcupine.Operation{ClientId: id, Input: produceIn{value}, Call: call, Output: produceOut{offset: off}, Return: h.now()})
		case errors.Is(err, cluster.ErrUnknownOutcome):
			h.add(porcupine.Operation{ClientId: id, Input: produceIn{value}, Call: call, Output: produceOut{unknown: true}, Return: math.MaxInt64})
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// consumer reads random offsets near the acknowledged end on random nodes,
// waiting for each to be committed there; reads that time out are dropped.
func consumer(ctx context.Context, id int, logs func() []*cluster.Log, h *history, rng *rand.Rand) {
	for ctx.Err() == nil {
		time.Sleep(time.Millisecond) // keeps the history small enough to check quickly
		ls := logs()
		l := ls[rng.IntN(len(ls))]
		off := uint64(rng.IntN(h.ackedCount() + 3))
		call := h.now()
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := l.Wait(wctx, off)
		cancel()
		if err != nil {
			continue
		}
		rec, err := l.Read(context.Background(), off)
		if err != nil {
			continue
		}
		h.add(porcupine.Operation{ClientId: id, Input: consumeIn{off}, Call: call, Output: consumeOut{string(rec.Value)}, Return: h.now()})
	}
}

// TestFailoverUnderLoad closes the leader while producers and consumers
// run, waits for writes on a new leader, and then checks that every
// acknowledged record is on every survivor at its offset, that the
// survivors' logs are identical and hold nothing that was never produced,
// and that the whole history is linearizable.
func TestFailoverUnderLoad(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	old := waitLeader(t, nodes...)
	logs := logsOf(nodes)
	h, stop := runLoad(t, func() []*cluster.Log { return logs }, 1)
	waitFor(t, func() bool { return h.ackedCount() >= 50 })
	before := h.ackedCount()
	old.stop(t)
	waitFor(t, func() bool { return h.ackedCount() >= before+50 })
	stop()

	var rest []*node
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	newLeader := waitLeader(t, rest...)
	vals, end := checkRun(t, h, rest)
	t.Logf("%d records, %d acknowledged, %d operations; leader %s -> %s", len(vals), len(h.acked), len(h.ops), old.id, newLeader.id)

	// The old leader comes back as a follower and catches up.
	back := p.startNode(t, old.id, old.dir, old.port.addr, false)
	*old = *back
	waitApplied(t, end+1, nodes...)
	sameLogs(t, nodes...)
}

// runLoad starts three producers and two consumers (their random offsets
// seeded with seed) on the logs current returns; stop ends them and waits.
func runLoad(t *testing.T, current func() []*cluster.Log, seed uint64) (h *history, stop func()) {
	h = &history{start: time.Now(), acked: map[uint64]string{}}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for id := range 3 {
		wg.Go(func() { producer(ctx, id, current, h) })
	}
	for id := 3; id < 5; id++ {
		rng := rand.New(rand.NewPCG(uint64(id), seed))
		wg.Go(func() { consumer(ctx, id, current, h, rng) })
	}
	return h, func() {
		cancel()
		wg.Wait()
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPartitionedLeader cuts the leader off from its peers under load: the
// others elect a new leader and go on, the old one serves no record that
// was not committed, and after the partition heals it catches up. Then
// every acknowledged record is everywhere and the history is linearizable.
func TestPartitionedLeader(t *testing.T) {
	p := newTestPKI(t)
	nodes := p.startCluster(t, 3)
	old := waitLeader(t, nodes...)
	logs := logsOf(nodes)
	h, stop := runLoad(t, func() []*cluster.Log { return logs }, 3)
	waitFor(t, func() bool { return h.ackedCount() >= 40 })
	old.port.layer.Isolate(true)
	var rest []*node
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	before := h.ackedCount()
	waitFor(t, func() bool { return h.ackedCount() >= before+40 })
	if old.log.IsLeader() {
		t.Fatal("the isolated node still leads")
	}
	newLeader := waitLeader(t, rest...)
	old.port.layer.Isolate(false)
	waitFor(t, func() bool { return h.ackedCount() >= before+80 })
	stop()

	vals, _ := checkRun(t, h, nodes)
	t.Logf("%d records, %d operations; leader %s -> %s", len(vals), len(h.ops), old.id, newLeader.id)
}

// checkRun ends a run of producers and consumers. It appends a barrier
// record through nodes (once it is applied everywhere, so is everything
// before it), waits for every node to apply it, and checks that the logs
// are identical, that every acknowledged record is at its offset, that
// every record is one a produce in the history sent, and that the history
// is linearizable; a history that is not is left as HTML in artifactDir.
// It returns the log and the barrier's offset.
func checkRun(t *testing.T, h *history, nodes []*node) ([][]byte, uint64) {
	t.Helper()
	end := appendTo(t, nodes, [][]byte{[]byte("end")})
	waitApplied(t, end+1, nodes...)
	vals := sameLogs(t, nodes...)
	h.mu.Lock()
	for off, v := range h.acked {
		if off >= uint64(len(vals)) || string(vals[off]) != v {
			t.Errorf("acknowledged %q at offset %d is missing", v, off)
		}
	}
	h.mu.Unlock()
	explain(t, h, vals)
	res, info := porcupine.CheckOperationsVerbose(logModel, h.ops, time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(artifactDir(t), strings.ReplaceAll(t.Name(), "/", "_")+"-history.html")
		if err := porcupine.VisualizePath(logModel, info, path); err != nil {
			t.Error(err)
		}
		t.Fatalf("history of %d operations is not linearizable (%s); see %s", len(h.ops), res, path)
	}
	return vals, end
}

// explain reports what would make a history illegal against the final
// log: records no produce in the history sent, and reads that saw
// something else than the final log holds.
func explain(t *testing.T, h *history, vals [][]byte) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	produced := map[string]bool{"end": true}
	for _, op := range h.ops {
		switch in := op.Input.(type) {
		case produceIn:
			produced[in.value] = true
		case consumeIn:
			out := op.Output.(consumeOut)
			if in.offset >= uint64(len(vals)) || string(vals[in.offset]) != out.value {
				t.Errorf("client %d read %q at offset %d; the final log does not hold it there", op.ClientId, out.value, in.offset)
			}
		}
	}
	for off, v := range vals {
		if !produced[string(v)] {
			t.Errorf("offset %d holds %q, which no produce in the history sent", off, v)
		}
	}
}

// artifactDir is where a failed check leaves its evidence:
// $PROGLOG_ARTIFACTS (CI keeps it) or the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PROGLOG_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
