//go:build slow

package main_test

import (
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"

	"github.com/proglog/proglog/catalog"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// partitionDirs lists a member's partition directories.
func (c *testCluster) partitionDirs(m *member) []string {
	entries, err := os.ReadDir(filepath.Join(c.root, m.id, "partitions"))
	if err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "wal" { // the partitions' shared Raft log
			out = append(out, e.Name())
		}
	}
	return out
}

// readPartition reads records [0, next) of a partition from addr (topic
// "" is the default topic).
func (c *testCluster) readPartition(addr, topic string, p uint32, next uint64) [][]byte {
	c.t.Helper()
	out := make([][]byte, 0, next)
	if next == 0 {
		return out
	}
	ctx, cancel := c.call(30 * time.Second)
	defer cancel()
	stream, err := c.client(addr).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Topic: topic, Partition: p, MaxBatch: 512})
	if err != nil {
		c.t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() {
		msg := stream.Msg()
		recs := msg.GetRecords()
		if msg.GetRecord() != nil {
			recs = append(recs, msg.GetRecord())
		}
		for _, r := range recs {
			if r.GetOffset() != uint64(len(out)) {
				c.t.Fatalf("%s %s/%d: offset %d after %d records", addr, topic, p, r.GetOffset(), len(out))
			}
			out = append(out, r.GetValue())
		}
		if uint64(len(out)) >= next {
			return out[:next]
		}
	}
	c.t.Fatalf("%s %s/%d: stream ended after %d of %d records: %v", addr, topic, p, len(out), next, stream.Err())
	return nil
}

// partitionNext waits until every running member reports the same next
// offset for the partition (has applied the same records) and returns it.
func (c *testCluster) partitionNext(topic string, p uint32) uint64 {
	c.t.Helper()
	var next uint64
	waitFor(c.t, fmt.Sprintf("the replicas of %s/%d to converge", topic, p), 30*time.Second, func() bool {
		first := true
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			ctx, cancel := c.call(2 * time.Second)
			st, err := c.client(m.addr).GetStats(ctx, &logv1.GetStatsRequest{Topic: topic, Partition: p})
			cancel()
			if err != nil {
				return false
			}
			if first {
				next, first = st.GetNextOffset(), false
			} else if st.GetNextOffset() != next {
				return false
			}
		}
		return true
	})
	return next
}

// partitionedLog is the porcupine model of a topic: per partition, the
// sequence of produced values. A produce appends to its partition and
// returns the new record's offset; a consume returns the value at its
// offset. Partition splits a history by partition, so each is checked on
// its own: offsets are per partition, and nothing orders two partitions.
var partitionedLog = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[uint32][]porcupine.Operation{}
		var keys []uint32
		for _, op := range history {
			p := op.Input.(partOp).partition
			if _, ok := by[p]; !ok {
				keys = append(keys, p)
			}
			by[p] = append(by[p], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = by[k]
		}
		return out
	},
	Init: func() any { return []string(nil) },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.([]string), input.(partOp), output.(partOut)
		if in.produce {
			if !out.unknown && out.offset != uint64(len(st)) {
				return false, st
			}
			return true, append(slices.Clip(st), in.value)
		}
		return in.offset < uint64(len(st)) && st[in.offset] == out.value, st
	},
	Equal: func(a, b any) bool { return slices.Equal(a.([]string), b.([]string)) },
	DescribeOperation: func(input, output any) string {
		in := input.(partOp)
		if in.produce {
			return fmt.Sprintf("produce(%d, %s) -> %+v", in.partition, in.value, output)
		}
		return fmt.Sprintf("consume(%d@%d) -> %+v", in.partition, in.offset, output)
	},
}

type partOp struct {
	produce   bool
	partition uint32
	value     string // produce
	offset    uint64 // consume
}

type partOut struct {
	offset  uint64 // produce
	unknown bool   // produce: failed, so it may or may not have been applied
	value   string // consume
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// notApplied reports whether a failed produce says, in its AppendOutcome
// detail, that nothing was written.
func notApplied(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if o, ok := v.(*logv1.AppendOutcome); ok {
				return o.GetOutcome() == logv1.AppendOutcome_OUTCOME_NOT_APPLIED
			}
		}
	}
	return false
}

// ack is one acknowledged produce.
type topicAck struct {
	partition uint32
	offset    uint64
	value     string
}

// TestTopicsKillNodeUnderLoad produces keyed records to a topic of four
// partitions replicated on all three nodes through every node, while
// others read records back through every node, kills a node with SIGKILL
// under that load and brings it back: afterwards every acknowledged record
// is at its offset in its partition on every node, the replicas of each
// partition are identical, and the history of produces and reads is
// linearizable per partition (porcupine).
func TestTopicsKillNodeUnderLoad(t *testing.T) {
	topicsUnderFault(t, startCluster(t), func(c *testCluster, victim *member, during func()) {
		victim.kill9()
		during()
		victim.start()
		c.waitReady(victim)
	})
}

// TestTopicsPausedNodeUnderLoad is TestTopicsKillNodeUnderLoad with the
// node stopped (SIGSTOP) for a while rather than killed: it leads some
// partitions, which elect other leaders meanwhile, and when it resumes it
// must step down from stale leaderships without losing or inventing a
// record.
func TestTopicsPausedNodeUnderLoad(t *testing.T) {
	topicsUnderFault(t, startCluster(t), func(c *testCluster, victim *member, during func()) {
		victim.signal(syscall.SIGSTOP)
		during()
		victim.signal(syscall.SIGCONT)
		c.waitReady(victim)
	})
}

// topicsUnderFault runs the load of TestTopicsKillNodeUnderLoad on c (three
// members) and, once it is under way, fault on n2 or n3 (during waits for
// more acknowledged produces), then checks what it checks.
func topicsUnderFault(t *testing.T, c *testCluster, fault func(c *testCluster, victim *member, during func())) {
	ctx := t.Context()
	if _, err := c.client(c.members[0].addr).CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 4, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	var (
		mu         sync.Mutex // guards acks and ops
		acks       []topicAck
		ops        []porcupine.Operation
		wg         sync.WaitGroup
		pctx, stop = context.WithCancel(ctx)
		start      = time.Now()
	)
	now := func() int64 { return int64(time.Since(start)) }
	defer stop()
	var addrs []string // the producers read these, never the members the test restarts
	for _, m := range c.members {
		addrs = append(addrs, m.addr)
	}
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; pctx.Err() == nil; i++ {
				addr := addrs[rng.IntN(len(addrs))]
				v := fmt.Sprintf("w%d-%d", w, i)
				in := partOp{produce: true, partition: uint32(catalog.PartitionForKey([]byte(v), 4)), value: v}
				cctx, cancel := context.WithTimeout(pctx, time.Second) // short: a paused node holds a request until it ends
				call := now()
				res, err := c.client(addr).Produce(cctx, &logv1.ProduceRequest{Topic: "orders", Record: &logv1.Record{Key: []byte(v), Value: []byte(v)}})
				ret := now()
				cancel()
				mu.Lock()
				switch {
				case err != nil && notApplied(err):
					// Nothing was written: no operation at all.
				case err != nil:
					ops = append(ops, porcupine.Operation{ClientId: w, Input: in, Call: call, Output: partOut{unknown: true}, Return: math.MaxInt64})
				default:
					ops = append(ops, porcupine.Operation{ClientId: w, Input: in, Call: call, Output: partOut{offset: res.GetOffset()}, Return: ret})
					acks = append(acks, topicAck{res.GetPartition(), res.GetOffset(), v})
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	// Readers: a random acknowledged-or-earlier offset of a random
	// partition, through a random node; a read that fails (a node down, a
	// follower behind) tells nothing and is left out.
	for r := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 11))
			for pctx.Err() == nil {
				p := uint32(rng.IntN(4))
				mu.Lock()
				var high uint64
				for _, a := range acks {
					if a.partition == p {
						high = max(high, a.offset+1)
					}
				}
				mu.Unlock()
				if high == 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				off := rng.Uint64N(high)
				addr := addrs[rng.IntN(len(addrs))]
				cctx, cancel := context.WithTimeout(pctx, 2*time.Second)
				call := now()
				res, err := c.client(addr).Consume(cctx, &logv1.ConsumeRequest{Topic: "orders", Partition: p, Offset: off})
				ret := now()
				cancel()
				if err != nil {
					continue
				}
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: 4 + r, Input: partOp{partition: p, offset: off}, Call: call,
					Output: partOut{value: string(res.GetRecord().GetValue())}, Return: ret})
				mu.Unlock()
			}
		})
	}
	progress := func(n int) {
		waitFor(t, fmt.Sprintf("%d acknowledged produces", n), 60*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acks) >= n
		})
	}
	more := func(n int) {
		mu.Lock()
		at := len(acks)
		mu.Unlock()
		progress(at + n)
	}
	progress(200)
	fault(c, c.members[1+rand.IntN(2)], func() { more(200) })
	more(200)
	stop()
	wg.Wait()

	stored := map[string]uint64{} // every record the partitions hold, by value
	for p := range uint32(4) {
		next := c.partitionNext("orders", p)
		var want [][]byte
		for _, m := range c.members {
			got := c.readPartition(m.addr, "orders", p, next)
			if want == nil {
				want = got
				continue
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("orders/%d offset %d: %s has %q, another node %q", p, i, m.id, got[i], want[i])
				}
			}
		}
		for _, a := range acks {
			if a.partition != p {
				continue
			}
			if a.offset >= next || string(want[a.offset]) != a.value {
				t.Fatalf("acknowledged %q at orders/%d offset %d; the partition holds %d records", a.value, p, a.offset, next)
			}
		}
		for i, v := range want {
			stored[string(v)] = uint64(i)
		}
	}
	// A produce of unknown outcome either never happened (its value is in
	// no partition: drop it) or happened at the offset where its value is,
	// at some time after its call (Return stays open). Known, it no longer
	// multiplies porcupine's search.
	unknown := 0
	ops = slices.DeleteFunc(ops, func(op porcupine.Operation) bool {
		in, out := op.Input.(partOp), op.Output.(partOut)
		return in.produce && out.unknown && !hasKey(stored, in.value)
	})
	for i, op := range ops {
		in, out := op.Input.(partOp), op.Output.(partOut)
		if in.produce && out.unknown {
			unknown++
			ops[i].Output = partOut{offset: stored[in.value]}
		}
	}
	switch res, _ := porcupine.CheckOperationsVerbose(partitionedLog, ops, time.Minute); res {
	case porcupine.Illegal:
		t.Fatalf("the history of %d operations (%d produces of unknown outcome that took effect) is not linearizable per partition", len(ops), unknown)
	case porcupine.Unknown:
		t.Fatalf("porcupine gave up after a minute on %d operations (%d produces of unknown outcome that took effect)", len(ops), unknown)
	}
	t.Logf("%d acknowledged produces checked over 4 partitions on 3 nodes; %d operations linearizable per partition", len(acks), len(ops))
}

// TestTopicsChangedWhileANodeIsDown deletes a topic and creates another
// while a node is killed: when it comes back it removes the deleted
// topic's files and serves the new topic.
func TestTopicsChangedWhileANodeIsDown(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	n1 := c.client(c.members[0].addr)
	if _, err := n1.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "old", Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	victim := c.members[2]
	waitFor(t, victim.id+" to host the old topic", 30*time.Second, func() bool { return len(c.partitionDirs(victim)) == 2 })
	oldDirs := c.partitionDirs(victim)
	victim.kill9()

	if _, err := n1.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "new", Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	for p := range uint32(2) {
		if _, err := n1.Produce(ctx, &logv1.ProduceRequest{Topic: "new", Partition: &p, Record: &logv1.Record{Value: fmt.Appendf(nil, "new-%d", p)}}); err != nil {
			t.Fatal(err)
		}
	}

	victim.start()
	c.waitReady(victim)
	waitFor(t, victim.id+" to drop the deleted topic and host the new one", 30*time.Second, func() bool {
		got := c.partitionDirs(victim)
		return len(got) == 2 && !slices.ContainsFunc(got, func(d string) bool { return slices.Contains(oldDirs, d) })
	})
	for p := range uint32(2) {
		next := c.partitionNext("new", p)
		if got := c.readPartition(victim.addr, "new", p, next); len(got) != 1 || string(got[0]) != fmt.Sprint("new-", p) {
			t.Fatalf("%s reads new/%d as %q", victim.id, p, got)
		}
	}
	_, err := c.client(victim.addr).Consume(ctx, &logv1.ConsumeRequest{Topic: "old"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "old") {
		t.Fatalf("%s reads the deleted topic: %v, want NotFound", victim.id, err)
	}
}

// TestTopicsReplaceDeadNode kills a node for good and replaces it: a new
// node joins, every partition's replica moves from the dead node to it,
// and the new node then holds every acknowledged record, identical to the
// others, while the partitions kept taking writes.
func TestTopicsReplaceDeadNode(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	n1 := c.client(c.members[0].addr)
	if _, err := n1.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	want := map[uint32][]string{}
	produce := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			p := uint32(i % 2)
			v := fmt.Sprintf("%s-%d", prefix, i)
			var res *logv1.ProduceResponse
			var err error
			// Until a new leader is elected where the dead node led, the
			// produce fails unapplied: retry, as a client does.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				cctx, cancel := c.call(10 * time.Second)
				res, err = n1.Produce(cctx, &logv1.ProduceRequest{Topic: "orders", Partition: &p, Record: &logv1.Record{Value: []byte(v)}})
				cancel()
				if err == nil || !notApplied(err) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatalf("Produce %s: %v", v, err)
			}
			if res.GetOffset() != uint64(len(want[p])) {
				t.Fatalf("Produce %s: offset %d, want %d", v, res.GetOffset(), len(want[p]))
			}
			want[p] = append(want[p], v)
		}
	}
	produce("before", 200)
	dead := c.members[2]
	dead.kill9()
	produce("while-dead", 50)

	n4 := c.addMember()
	// Serving is not yet being a member: the leader adds n4 once gossip
	// brings it and its certificate checks out.
	c.waitLeader(4) // n1, n2, n4 and the dead n3, still a voter
	for p := range 2 {
		cctx, cancel := c.call(2 * time.Minute)
		res, err := n1.MovePartition(cctx, &logv1.MovePartitionRequest{Topic: "orders", Partition: uint32(p), FromNode: dead.id, ToNode: n4.id})
		cancel()
		if err != nil {
			t.Fatalf("MovePartition %d %s -> %s: %v", p, dead.id, n4.id, err)
		}
		if got := res.GetReplicas(); slices.Contains(got, dead.id) || !slices.Contains(got, n4.id) {
			t.Fatalf("partition %d's replicas after the move: %v", p, got)
		}
	}
	produce("after", 50)
	waitFor(t, n4.id+" to host both partitions", 30*time.Second, func() bool { return len(c.partitionDirs(n4)) == 2 })
	for p := range uint32(2) {
		next := c.partitionNext("orders", p)
		if next != uint64(len(want[p])) {
			t.Fatalf("orders/%d ends at %d, want %d", p, next, len(want[p]))
		}
		for _, m := range c.members {
			if m == dead {
				continue
			}
			got := c.readPartition(m.addr, "orders", p, next)
			for i, v := range want[p] {
				if string(got[i]) != v {
					t.Fatalf("%s: orders/%d offset %d is %q, want %q", m.id, p, i, got[i], v)
				}
			}
		}
	}
	waitFor(t, "every partition's replicas in sync without the dead node", 30*time.Second, func() bool {
		cctx, cancel := c.call(5 * time.Second)
		defer cancel()
		desc, err := c.client(n4.addr).DescribeTopic(cctx, &logv1.DescribeTopicRequest{Name: "orders"})
		if err != nil {
			return false
		}
		for _, p := range desc.GetPartitions() {
			if len(p.GetReplicas()) != 3 {
				return false
			}
			for _, r := range p.GetReplicas() {
				if r.GetNodeId() == dead.id || !r.GetInSync() {
					return false
				}
			}
		}
		return true
	})
}

// TestTopicsPartitionNetns is TestTopicsKillNodeUnderLoad with the node cut
// off the network (its link down in its own namespace) rather than killed,
// and the catalogue changed while it is cut off: a topic deleted and
// another created and written. The node leads some partitions, which the
// majority takes over; once the link is back it learns what changed:
// it removes the deleted topic's files, hosts the new topic (when the
// leader placed a replica on it) with its records, and every partition's
// replicas are identical.
func TestTopicsPartitionNetns(t *testing.T) {
	nn := newNetns(t, 3)
	c := startNetnsCluster(t, nn, 3, nil).testCluster
	ctx := t.Context()
	if _, err := c.client(c.members[0].addr).CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "old", Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	oldDirs := map[*member][]string{}
	for _, m := range c.members {
		waitFor(t, m.id+" to host the old topic", 30*time.Second, func() bool { return len(c.partitionDirs(m)) == 2 })
		oldDirs[m] = c.partitionDirs(m)
	}

	var victim *member
	newRF := uint32(3)
	topicsUnderFault(t, c, func(c *testCluster, v *member, during func()) {
		victim = v
		nn.cut(slices.Index(c.members, v)+1, true)
		// Through n1, which stays with the majority: the system group may
		// have to elect a leader first, so retry what is not refused.
		retry := func(what string, call func(ctx context.Context) error) {
			t.Helper()
			var err error
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				cctx, cancel := c.call(5 * time.Second)
				err = call(cctx)
				cancel()
				if code := connect.CodeOf(err); err == nil || code == connect.CodeFailedPrecondition || code == connect.CodeInvalidArgument {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s while %s is cut off: %v", what, v.id, err)
			}
		}
		n1 := c.client(c.members[0].addr)
		retry("delete old", func(ctx context.Context) error {
			_, err := n1.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "old"})
			if connect.CodeOf(err) == connect.CodeNotFound { // an earlier try took effect
				return nil
			}
			return err
		})
		// Placed on all three nodes, the cut-off one included, unless
		// gossip has already found it gone: then only on the two others.
		cctx, cancel := c.call(30 * time.Second)
		_, err := n1.CreateTopic(cctx, &logv1.CreateTopicRequest{Name: "new", Partitions: 2, ReplicationFactor: newRF})
		cancel()
		if connect.CodeOf(err) == connect.CodeFailedPrecondition && strings.Contains(err.Error(), v.id) {
			t.Logf("gossip had found %s gone: the new topic goes on the two others", v.id)
			newRF = 2
			retry("create new", func(ctx context.Context) error {
				_, err := n1.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "new", Partitions: 2, ReplicationFactor: newRF})
				return err
			})
		} else if err != nil {
			t.Fatalf("create new while %s is cut off: %v", v.id, err)
		}
		for p := range uint32(2) {
			retry("produce to new", func(ctx context.Context) error {
				_, err := n1.Produce(ctx, &logv1.ProduceRequest{Topic: "new", Partition: &p, Record: &logv1.Record{Value: fmt.Appendf(nil, "new-%d", p)}})
				return err
			})
		}
		during()
		nn.cut(slices.Index(c.members, v)+1, false)
		c.waitReady(v)
	})

	hosted := 4 // orders
	if newRF == 3 {
		hosted += 2
	}
	waitFor(t, victim.id+" to drop the deleted topic's files and host what it was given", 30*time.Second, func() bool {
		got := c.partitionDirs(victim)
		return len(got) == hosted && !slices.ContainsFunc(got, func(d string) bool { return slices.Contains(oldDirs[victim], d) })
	})
	for p := range uint32(2) {
		next := c.partitionNext("new", p)
		for _, m := range c.members {
			if got := c.readPartition(m.addr, "new", p, next); len(got) != 1 || string(got[0]) != fmt.Sprint("new-", p) {
				t.Fatalf("%s reads new/%d as %q, want the one record produced", m.id, p, got)
			}
		}
	}
	_, err := c.client(victim.addr).Consume(ctx, &logv1.ConsumeRequest{Topic: "old"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("%s reads the deleted topic: %v, want NotFound", victim.id, err)
	}
}
