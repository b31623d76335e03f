package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/client"
	"github.com/proglog/proglog/cluster/clustertest"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// waitApplied waits until every node's store holds offsets below next.
func waitApplied(t *testing.T, next uint64, nodes ...*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.log.Wait(ctx, next-1); err != nil {
			t.Fatalf("%s: wait for %d: %v", n.id, next-1, err)
		}
	}
}

func others(nodes []*node, not *node) []*node {
	var out []*node
	for _, n := range nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

func TestProduceGoesToLeaderAndConsumesSpread(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	followers := others(nodes, leader)
	// Seed with a follower only: the client must discover the leader.
	c := p.newClient(t, "root", client.Config{Addrs: []string{followers[0].addr}})

	const n = 20
	for i := range n {
		off, err := c.Produce(t.Context(), fmt.Appendf(nil, "rec-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) {
			t.Fatalf("record %d got offset %d", i, off)
		}
	}
	base, err := c.ProduceBatch(t.Context(), [][]byte{[]byte("b0"), []byte("b1"), []byte("b2")})
	if err != nil || base != n {
		t.Fatalf("ProduceBatch = %d, %v; want %d", base, err, n)
	}
	if got := leader.calls.count("Produce"); got != n {
		t.Errorf("leader received %d Produce calls, want %d", got, n)
	}
	if got := leader.calls.count("ProduceBatch"); got != 1 {
		t.Errorf("leader received %d ProduceBatch calls, want 1", got)
	}
	for _, f := range followers {
		if got := f.calls.count("Produce") + f.calls.count("ProduceBatch"); got != 0 {
			t.Errorf("follower %s received %d produce calls, want 0", f.id, got)
		}
	}

	waitApplied(t, n+3, nodes...)
	for i := range uint64(n + 3) {
		rec, err := c.Consume(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetOffset() != i {
			t.Fatalf("Consume(%d) returned offset %d", i, rec.GetOffset())
		}
	}
	if got := leader.calls.count("Consume"); got != 0 {
		t.Errorf("leader served %d Consume calls while followers were up", got)
	}
	for _, f := range followers {
		if got := f.calls.count("Consume"); got < 5 {
			t.Errorf("follower %s served %d of %d consumes; want them spread", f.id, got, n+3)
		}
	}

	servers, err := c.Servers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, s := range servers {
		if s.GetIsLeader() {
			leaders++
			if s.GetRpcAddr() != leader.addr {
				t.Errorf("Servers names %s as leader, want %s", s.GetRpcAddr(), leader.addr)
			}
		}
	}
	if len(servers) != 3 || leaders != 1 {
		t.Errorf("Servers = %v; want 3 with one leader", servers)
	}

	// A record past the end is OutOfRange, not retried forever.
	if _, err := c.Consume(t.Context(), 1000); connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Errorf("Consume past the end: %v, want OutOfRange", err)
	}
}

func TestFollowsNewLeader(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	old := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})

	for i := range 5 {
		if _, err := c.Produce(t.Context(), fmt.Appendf(nil, "before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	old.stop(t)
	rest := others(nodes, old)

	// The client still believes in the old leader: its first attempt is
	// refused (nothing sent), and it retries until the new leader answers.
	off, err := c.Produce(t.Context(), []byte("after"))
	if err != nil {
		t.Fatalf("produce after the leader stopped: %v", err)
	}
	if off != 5 {
		t.Errorf("offset after failover = %d, want 5", off)
	}
	leader := waitLeader(t, rest...)
	if got := leader.calls.count("Produce"); got < 1 {
		t.Errorf("new leader %s received no Produce call", leader.id)
	}
	waitApplied(t, 6, rest...)
	for i := range uint64(6) {
		rec, err := c.Consume(t.Context(), i)
		if err != nil {
			t.Fatalf("consume %d: %v", i, err)
		}
		want := fmt.Sprintf("before-%d", i)
		if i == 5 {
			want = "after"
		}
		if string(rec.GetValue()) != want {
			t.Errorf("offset %d holds %q, want %q", i, rec.GetValue(), want)
		}
	}
}

func TestTailSurvivesServerClosing(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})

	const total = 60
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan *logv1.Record, total)
	tailErr := make(chan error, 1)
	go func() {
		tailErr <- c.Tail(ctx, 0, func(r *logv1.Record) error {
			got <- r
			return nil
		})
	}()

	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := c.Produce(t.Context(), fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	receive := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			select {
			case r := <-got:
				if r.GetOffset() != uint64(i) || string(r.GetValue()) != fmt.Sprintf("v%d", i) {
					t.Fatalf("tail got %d:%q, want %d:v%d", r.GetOffset(), r.GetValue(), i, i)
				}
			case err := <-tailErr:
				t.Fatalf("tail ended: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("tail stuck before offset %d", i)
			}
		}
	}
	produce(0, total/2)
	receive(0, total/2)

	// Stop whichever follower serves the tail.
	leader := waitLeader(t, nodes...)
	var serving *node
	for _, f := range others(nodes, leader) {
		if f.calls.count("ConsumeStream") > 0 {
			serving = f
		}
	}
	if serving == nil {
		t.Fatal("no follower serves the tail")
	}
	serving.stop(t)

	produce(total/2, total)
	receive(total/2, total)
	select {
	case r := <-got:
		t.Fatalf("extra record %d", r.GetOffset())
	default:
	}
	cancel()
	if err := <-tailErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Tail returned %v, want context.Canceled", err)
	}
}

func TestTailCallbackErrorAndStart(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	if _, err := c.ProduceBatch(t.Context(), [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	var seen []uint64
	err := c.Tail(t.Context(), 1, func(r *logv1.Record) error {
		seen = append(seen, r.GetOffset())
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(seen, []uint64{1, 2}) {
		t.Errorf("Tail = %v after %v; want the callback's error after [1 2]", err, seen)
	}
	// Past the end of the only node: an error, not an endless retry.
	err = c.Tail(t.Context(), 10, func(*logv1.Record) error { return nil })
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Errorf("Tail past the end = %v, want OutOfRange", err)
	}
}

func TestUnknownOutcomeIsNotRetried(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	produces := func() int {
		n := 0
		for _, nd := range nodes {
			n += nd.calls.count("Produce")
		}
		return n
	}
	cases := []struct {
		name    string
		timeout time.Duration
	}{
		// ctx ends on the client while the request is out.
		{"client deadline", 50 * time.Millisecond},
		// The isolated leader steps down and answers that the outcome is
		// unknown (leadership lost while committing).
		{"leader steps down", 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A settled leader first: after the previous case the old one
			// may still be stepping down, and an append it takes then has
			// an unknown outcome too, which is not what this case tests.
			var leader *node
			for attempt := 0; ; attempt++ {
				leader = knownLeader(t, c, nodes)
				_, err := c.Produce(t.Context(), []byte("sure"))
				if err == nil {
					break
				}
				if !errors.Is(err, client.ErrUnknownOutcome) || attempt == 20 {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			before := produces()
			// Cut the leader off from Raft: its append leaves the node but
			// cannot commit, so nobody can tell whether it will.
			leader.layer.Isolate(true)
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			_, err := c.Produce(ctx, []byte("maybe"))
			cancel()
			leader.layer.Isolate(false)
			if !errors.Is(err, client.ErrUnknownOutcome) {
				t.Fatalf("produce on an isolated leader = %v, want ErrUnknownOutcome", err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if n := produces() - before; n != 1 {
				t.Errorf("the client sent the uncertain produce %d times, want once", n)
			}
		})
	}
}

// knownLeader waits until the client's view and the cluster agree on the
// leader, and returns it.
func knownLeader(t *testing.T, c *client.Client, nodes []*node) *node {
	t.Helper()
	for range 500 {
		leader := waitLeader(t, nodes...)
		servers, err := c.Servers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if s.GetIsLeader() && s.GetRpcAddr() == leader.addr {
				return leader
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the client never learned the leader")
	return nil
}

func TestProducer(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	prod, err := c.NewProducer(t.Context(), 16)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	acks := make([]*client.Ack, 0, n)
	for i := range n {
		values := [][]byte{fmt.Appendf(nil, "p%d", i)}
		if i%10 == 0 {
			values = append(values, fmt.Appendf(nil, "p%d-extra", i))
		}
		ack, err := prod.Send(t.Context(), values...)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	next := uint64(0)
	for i, ack := range acks {
		off, err := ack.Wait(t.Context())
		if err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		if off != next {
			t.Fatalf("ack %d at offset %d, want %d", i, off, next)
		}
		next++
		if i%10 == 0 {
			next++
		}
	}
	if err := prod.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := leader.calls.count("ProduceStream"); got != 1 {
		t.Errorf("leader received %d ProduceStream calls, want 1", got)
	}
	if _, err := prod.Send(t.Context(), []byte("late")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	waitApplied(t, next, nodes...)
	rec, err := c.Consume(t.Context(), next-1)
	if err != nil || string(rec.GetValue()) != "p99" {
		t.Errorf("last record = %v, %v; want p99", rec, err)
	}
}

func TestProducerAcrossFailover(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	old := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	prod, err := c.NewProducer(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(t.Context())
	ack, err := prod.Send(t.Context(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ack.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	old.stop(t)
	// Every Send either lands or says why; once the stream broke, later
	// Sends open a new one to the new leader.
	ok := false
	for range 200 {
		ack, err := prod.Send(t.Context(), []byte("y"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err = ack.Wait(t.Context()); err == nil {
			ok = true
			break
		}
		if connect.CodeOf(err) == connect.CodeUnknown && !errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("ack failed without a verdict: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("no Send succeeded after the failover")
	}
}

func TestProduceOnlyIdentity(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	follower := others(nodes, leader)[0]
	// "writer" may not call GetServers: the seed forwards its appends.
	c := p.newClient(t, "writer", client.Config{Addrs: []string{follower.addr}})
	off, err := c.Produce(t.Context(), []byte("w"))
	if err != nil || off != 0 {
		t.Fatalf("Produce = %d, %v", off, err)
	}
	if _, err := c.Consume(t.Context(), 0); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("Consume by a producer-only subject = %v, want PermissionDenied", err)
	}
}

func TestProtocols(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	plainAddr, stopPlain := exampleServer() // --insecure: prior-knowledge HTTP/2
	defer stopPlain()
	protos := []client.Protocol{client.ProtocolConnect, client.ProtocolGRPC, client.ProtocolGRPCWeb}
	for _, tc := range []struct {
		name string
		addr string
		tls  bool
	}{{"tls", nodes[0].addr, true}, {"plaintext", plainAddr, false}} {
		for i, proto := range protos {
			t.Run(tc.name+"/"+string(proto), func(t *testing.T) {
				cfg := client.Config{Addrs: []string{tc.addr}, Protocol: proto, Logger: clustertest.Logger(t)}
				var c *client.Client
				if tc.tls {
					c = p.newClient(t, "root", cfg)
				} else {
					var err error
					if c, err = client.New(t.Context(), cfg); err != nil {
						t.Fatal(err)
					}
					defer c.Close()
				}
				off, err := c.Produce(t.Context(), []byte(proto))
				if err != nil || off != uint64(i) {
					t.Fatalf("Produce = %d, %v; want %d", off, err, i)
				}
				rec, err := c.Consume(t.Context(), off)
				if err != nil || string(rec.GetValue()) != string(proto) {
					t.Fatalf("Consume = %v, %v", rec, err)
				}
				var tailed []string
				stop := errors.New("stop")
				err = c.Tail(t.Context(), 0, func(r *logv1.Record) error {
					tailed = append(tailed, string(r.GetValue()))
					if r.GetOffset() == off {
						return stop
					}
					return nil
				})
				if !errors.Is(err, stop) || !slices.Equal(tailed, stringsOf(protos[:i+1])) {
					t.Fatalf("Tail = %v after %v", err, tailed)
				}
			})
		}
	}
}

func stringsOf(protos []client.Protocol) []string {
	out := make([]string, len(protos))
	for i, p := range protos {
		out[i] = string(p)
	}
	return out
}

func TestConfigAndClose(t *testing.T) {
	cases := []struct {
		name string
		cfg  client.Config
	}{
		{"no addrs", client.Config{}},
		{"empty addr", client.Config{Addrs: []string{""}}},
		{"bad protocol", client.Config{Addrs: []string{"127.0.0.1:1"}, Protocol: "smoke"}},
		{"backoff inverted", client.Config{Addrs: []string{"127.0.0.1:1"}, Backoff: client.Backoff{Initial: time.Second, Max: time.Millisecond}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := client.New(t.Context(), tc.cfg); !errors.Is(err, client.ErrConfig) {
				t.Errorf("New = %v, want ErrConfig", err)
			}
		})
	}
	t.Run("unreachable seeds", func(t *testing.T) {
		_, err := client.New(t.Context(), client.Config{Addrs: []string{closedAddr(t)}, Retries: 2,
			Backoff: client.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
		if !errors.Is(err, client.ErrRetriesExhausted) {
			t.Errorf("New = %v, want ErrRetriesExhausted", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		p := newTestCA(t)
		nodes := p.startCluster(t, 1)
		c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
		var wg sync.WaitGroup
		tailErr := make(chan error, 1)
		wg.Go(func() { tailErr <- c.Tail(t.Context(), 0, func(*logv1.Record) error { return nil }) })
		c.Close()
		wg.Wait()
		if err := <-tailErr; !errors.Is(err, client.ErrClosed) {
			t.Errorf("Tail after Close = %v, want ErrClosed", err)
		}
		if _, err := c.Produce(t.Context(), []byte("x")); !errors.Is(err, client.ErrClosed) {
			t.Errorf("Produce after Close = %v, want ErrClosed", err)
		}
	})
}

func TestConsumeFromLaggingFollowerFallsBackToLeader(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	leader := waitLeader(t, nodes...)
	lagging := others(nodes, leader)[0]
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})

	// The isolated follower stops receiving entries; the other two still
	// make a quorum.
	lagging.layer.Isolate(true)
	defer lagging.layer.Isolate(false)
	const n = 10
	for i := range n {
		if _, err := c.Produce(t.Context(), fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint64(n) {
		rec, err := c.Consume(t.Context(), i)
		if err != nil {
			t.Fatalf("consume %d: %v", i, err)
		}
		if want := fmt.Sprintf("r%d", i); string(rec.GetValue()) != want {
			t.Fatalf("offset %d holds %q, want %q", i, rec.GetValue(), want)
		}
	}
	if lagging.calls.count("Consume") == 0 || leader.calls.count("Consume") == 0 {
		t.Errorf("consumes: lagging follower %d, leader %d; want the leader to answer what the follower lacks",
			lagging.calls.count("Consume"), leader.calls.count("Consume"))
	}
}

func TestProduceWithEndedContextSendsNothing(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Produce(ctx, []byte("never"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnknownOutcome) {
		t.Errorf("Produce with an ended ctx = %v, want context.Canceled and no unknown outcome", err)
	}
	if n := nodes[0].calls.count("Produce"); n != 0 {
		t.Errorf("server received %d Produce calls", n)
	}
}

// TestFailoverUnderLoad stops the leader while two producers and a tail run:
// every acknowledged record must be in the log at its offset, produces fail
// only with ErrUnknownOutcome, and the tail sees the log without gaps or
// duplicates.
func TestFailoverUnderLoad(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 3)
	old := waitLeader(t, nodes...)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...)})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var tailed sync.Map // offset -> value
	tailErr := make(chan error, 1)
	go func() {
		tailErr <- c.Tail(ctx, 0, func(r *logv1.Record) error {
			if _, dup := tailed.LoadOrStore(r.GetOffset(), string(r.GetValue())); dup {
				return fmt.Errorf("offset %d delivered twice", r.GetOffset())
			}
			return nil
		})
	}()

	type result struct {
		acked   map[uint64]string
		unknown int
		err     error
	}
	const perProducer = 60
	halfway := make(chan struct{}, 2)
	results := make(chan result, 2)
	for pr := range 2 {
		go func() {
			res := result{acked: map[uint64]string{}}
			defer func() { results <- res }()
			signalled := false
			for i := 0; len(res.acked) < perProducer; i++ {
				if len(res.acked) == perProducer/2 && !signalled {
					halfway <- struct{}{}
					signalled = true
				}
				v := fmt.Sprintf("p%d-%d", pr, i)
				off, err := c.Produce(t.Context(), []byte(v))
				switch {
				case err == nil:
					res.acked[off] = v
				case errors.Is(err, client.ErrUnknownOutcome):
					res.unknown++
					if testing.Verbose() {
						t.Log(err)
					}
				default:
					res.err = err
					return
				}
			}
		}()
	}
	<-halfway
	old.stop(t)

	acked := map[uint64]string{}
	for range 2 {
		res := <-results
		if res.err != nil {
			t.Fatalf("produce failed without an unknown outcome: %v", res.err)
		}
		t.Logf("%d acknowledged, %d unknown outcomes", len(res.acked), res.unknown)
		for off, v := range res.acked {
			if prev, ok := acked[off]; ok {
				t.Fatalf("offset %d acknowledged twice: %q and %q", off, prev, v)
			}
			acked[off] = v
		}
	}
	rest := others(nodes, old)
	var maxOff uint64
	for off := range acked {
		maxOff = max(maxOff, off)
	}
	waitApplied(t, maxOff+1, rest...)
	for off, v := range acked {
		rec, err := c.Consume(t.Context(), off)
		if err != nil {
			t.Fatalf("consume %d: %v", off, err)
		}
		if string(rec.GetValue()) != v {
			t.Fatalf("offset %d holds %q, acknowledged %q", off, rec.GetValue(), v)
		}
	}
	// The tail reaches the last acknowledged record and agrees with it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := tailed.Load(maxOff); ok {
			break
		}
		select {
		case err := <-tailErr:
			t.Fatalf("tail ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tail did not reach offset %d", maxOff)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for off := range maxOff + 1 {
		v, ok := tailed.Load(off)
		if !ok {
			t.Fatalf("tail skipped offset %d", off)
		}
		if want, ok := acked[off]; ok && v != want {
			t.Fatalf("tail saw %q at %d, acknowledged %q", v, off, want)
		}
	}
	cancel()
	if err := <-tailErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Tail = %v, want context.Canceled", err)
	}
}

func TestProducerToStoppedServerIsNotUnknown(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startCluster(t, 1)
	c := p.newClient(t, "root", client.Config{Addrs: addrs(nodes...), Retries: 3})
	nodes[0].stop(t)
	prod, err := c.NewProducer(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(t.Context())
	ack, err := prod.Send(t.Context(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ack.Wait(t.Context())
	if err == nil || errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("ack from a stopped server = %v; want the dial error, not an unknown outcome", err)
	}
	if _, err := c.Produce(t.Context(), []byte("y")); err == nil || errors.Is(err, client.ErrUnknownOutcome) ||
		!errors.Is(err, client.ErrRetriesExhausted) {
		t.Errorf("Produce to a stopped server = %v; want ErrRetriesExhausted, not an unknown outcome", err)
	}
}
