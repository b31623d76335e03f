package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

type benchFlags struct {
	cf      clientFlags
	clients int
	records int
	size    byteSize
	keySize int // produce: bytes of key per record
	headers int // produce: small headers per record
	mode    string
	batch   int
	window  int
	tf      topicFlags // --topic, --partition
	topics  int        // produce: spread over bench-0..bench-<topics-1>
	parts   int        // produce: --partitions of the topics created
}

func newBenchCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: measure produce or consume throughput and latency",
		Long: `Measure a running node, like nats bench or kafka-producer-perf-test.

  proglog bench produce --clients 64 --mode unary --records 200000
  proglog bench produce --mode stream --batch 100 --records 2000000
  proglog bench consume --records 2000000 --batch 1000

Each client is a client of the cluster --addr belongs to, with its own
connections: produces go to the leader, consumes to the followers (the
leader when it is alone). Produce modes: unary (one Produce per record),
batch (one ProduceBatch per --batch records) and stream (pipelined
ProduceStream requests of --batch records, up to --window in flight).
Latency is measured per acknowledgement. Consume reads --records records
with ConsumeStream (max_batch = --batch) from the lowest offset; the log must
hold that many (run bench produce first).

Both take --topic and --partition (produce: records without keys go to the
partition the server picks per request, keyed ones (--key-size) where their
keys map to). bench produce --topics N --partitions P instead spreads the
load over the topics bench-0 to bench-<N-1>, creating those that do not
exist with P partitions (default 1); each client sends its requests to
their partitions in turn, each straight to the partition's leader (with
stream: a Producer per partition). The throughput reported is the aggregate of every client.` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("bench needs a subcommand: produce or consume")
		},
	}
	cmd.AddCommand(newBenchProduceCmd(e), newBenchConsumeCmd(e))
	return cmd
}

func (b *benchFlags) register(cmd *cobra.Command, defBatch int) {
	b.cf.register(cmd.Flags(), nil) // load generators run untraced
	f := cmd.Flags()
	f.IntVar(&b.clients, "clients", 1, "concurrent clients, each with its own connection")
	f.IntVar(&b.records, "records", 100000, "records in total, split across clients")
	f.IntVar(&b.batch, "batch", defBatch, "records per request (produce) or per stream message (consume)")
	b.tf.register(f, "the partition (consume: default 0; produce: default by key, or the server's pick)")
	b.size = 100
}

func (b *benchFlags) check() error {
	switch {
	case b.clients < 1:
		return usagef("--clients must be at least 1")
	case b.records < b.clients:
		return usagef("--records must be at least --clients")
	case b.batch < 1:
		return usagef("--batch must be at least 1")
	}
	return nil
}

func newBenchProduceCmd(e *env) *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Produce --records records of --size bytes and report throughput and latency",
		Args:  wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.check(); err != nil {
				return err
			}
			if b.mode != "unary" && b.mode != "batch" && b.mode != "stream" {
				return usagef("--mode %q: want unary, batch or stream", b.mode)
			}
			if b.window < 1 {
				return usagef("--window must be at least 1")
			}
			if b.keySize < 0 || b.headers < 0 {
				return usagef("--key-size and --headers must not be negative")
			}
			changed := cmd.Flags().Changed
			switch {
			case b.topics < 0:
				return usagef("--topics must not be negative")
			case b.topics > 0 && (changed("topic") || b.tf.partition.set):
				return usagef("--topics excludes --topic and --partition: it spreads the load over bench-0 to bench-%d", b.topics-1)
			case changed("partitions") && b.topics == 0:
				return usagef("--partitions goes with --topics: it is the partition count of the topics bench creates")
			case b.parts < 1:
				return usagef("--partitions must be at least 1")
			}
			targets, where, err := benchTargets(cmd.Context(), b, e.stderr)
			if err != nil {
				return err
			}
			res, err := runBench(cmd.Context(), b, produceWorker(b, targets))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "produce: %d client(s), %d records of %d B (key %d B, %d headers), mode %s, batch %d, protocol %s%s\n",
				b.clients, res.records, b.size, b.keySize, b.headers, b.mode, effectiveBatch(b), b.cf.protocol, where)
			res.print(e.stdout, "latency per ack")
			return nil
		},
	}
	b.register(cmd, 100)
	cmd.Flags().Var(&b.size, "size", "bytes per record")
	cmd.Flags().IntVar(&b.keySize, "key-size", 0, "bytes of key per record (distinct keys)")
	cmd.Flags().IntVar(&b.headers, "headers", 0, "headers per record, each a 12-byte key and an 8-byte value")
	cmd.Flags().StringVar(&b.mode, "mode", "stream", "unary, batch or stream")
	cmd.Flags().IntVar(&b.window, "window", 64, "stream mode: most requests in flight per client")
	cmd.Flags().IntVar(&b.topics, "topics", 0, "spread the load over the topics bench-0..bench-<N-1>, creating those missing")
	cmd.Flags().IntVar(&b.parts, "partitions", 1, "with --topics: the partitions of each topic bench creates")
	return cmd
}

// benchTargets returns where bench produce sends requests, each as the
// options of a call, and how to name them in the report. With --topics it
// creates the topics that do not exist yet.
func benchTargets(ctx context.Context, b benchFlags, warn io.Writer) ([][]client.TopicOption, string, error) {
	if b.topics == 0 {
		where := ""
		if b.tf.topic != "" {
			where = ", topic " + b.tf.topic
		}
		if b.tf.partition.set {
			where += fmt.Sprintf(", partition %d", b.tf.partition.p)
		}
		return [][]client.TopicOption{b.tf.options()}, where, nil
	}
	c, err := b.cf.dial(ctx, oneShotRetry)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	var targets [][]client.TopicOption
	created := 0
	for i := range b.topics {
		name := fmt.Sprintf("bench-%d", i)
		parts := b.parts
		cctx, cancel := unaryContext(ctx, b.cf.timeout)
		_, err := c.CreateTopic(cctx, client.TopicSpec{Name: name, Partitions: b.parts})
		if connect.CodeOf(err) == connect.CodeAlreadyExists {
			var d *client.TopicDescription
			if d, err = c.DescribeTopic(cctx, name); err == nil && d.Topic.Partitions != b.parts {
				fmt.Fprintf(warn, "proglog: topic %s exists with %d partitions, not %d: using it as it is\n", name, d.Topic.Partitions, b.parts)
				parts = d.Topic.Partitions
			}
		} else if err == nil {
			created++
		}
		cancel()
		if err != nil {
			return nil, "", fmt.Errorf("topic %s: %w", name, err)
		}
		// One target per partition, named: the client sends each straight
		// to its partition's leader (a Producer per partition, as a Kafka
		// producer batches per partition) instead of through one node.
		for p := range parts {
			targets = append(targets, []client.TopicOption{client.Topic(name), client.Partition(p)})
		}
	}
	return targets, fmt.Sprintf(", topics bench-0..bench-%d (%d partitions each, %d created)", b.topics-1, b.parts, created), nil
}

func newBenchConsumeCmd(e *env) *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Read --records records per run with ConsumeStream and report throughput",
		Args:  wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.check(); err != nil {
				return err
			}
			c, err := b.cf.dial(cmd.Context(), oneShotRetry)
			if err != nil {
				return err
			}
			ctx, cancel := unaryContext(cmd.Context(), b.cf.timeout)
			st, err := c.Stats(ctx, callOptions(b.tf.options())...)
			cancel()
			c.Close()
			if err != nil {
				return err
			}
			per := uint64(b.records / b.clients)
			if have := st.GetNextOffset() - st.GetLowestOffset(); have < per {
				return fmt.Errorf("the partition holds %d records, fewer than the %d each client reads: run proglog bench produce first", have, per)
			}
			res, err := runBench(cmd.Context(), b, consumeWorker(b, st.GetLowestOffset()))
			if err != nil {
				return err
			}
			where := ""
			if b.tf.topic != "" || b.tf.partition.set {
				where = fmt.Sprintf(", topic %s partition %d", cmp.Or(b.tf.topic, "default"), b.tf.partition.p)
			}
			fmt.Fprintf(e.stdout, "consume: %d client(s), %d records each from offset %d, max_batch %d, protocol %s%s\n",
				b.clients, per, st.GetLowestOffset(), b.batch, b.cf.protocol, where)
			res.print(e.stdout, "gap between messages")
			return nil
		},
	}
	b.register(cmd, 1000)
	return cmd
}

func effectiveBatch(b benchFlags) int {
	if b.mode == "unary" {
		return 1
	}
	return b.batch
}

// benchResult sums what the clients measured.
type benchResult struct {
	records int64
	bytes   int64
	elapsed time.Duration
	lat     []time.Duration // one per ack (produce) or per message (consume)
}

// worker runs one client's share (n records) and records what it saw.
type worker func(ctx context.Context, c *client.Client, n int, res *benchResult) error

func runBench(ctx context.Context, b benchFlags, w worker) (*benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg, err := b.cf.config(oneShotRetry)
	if err != nil {
		return nil, err
	}
	conns := make([]*client.Client, b.clients)
	for i := range conns {
		c, err := b.cf.connect(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		// Connect to the leader before the clock starts.
		wctx, wcancel := unaryContext(ctx, b.cf.timeout)
		_, err = c.WhoAmI(wctx)
		wcancel()
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	results := make([]benchResult, b.clients)
	errs := make([]error, b.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		n := b.records / b.clients
		if i < b.records%b.clients {
			n++
		}
		wg.Go(func() {
			if err := w(ctx, c, n, &results[i]); err != nil {
				errs[i] = err
				cancel() // one failure stops the run
			}
		})
	}
	wg.Wait()
	total := &benchResult{elapsed: time.Since(start)}
	for i, r := range results {
		total.records += r.records
		total.bytes += r.bytes
		total.lat = append(total.lat, r.lat...)
		if errs[i] != nil && !errors.Is(errs[i], context.Canceled) {
			return nil, fmt.Errorf("client %d: %w", i, errs[i])
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return total, nil
}

func (r *benchResult) print(w io.Writer, latLabel string) {
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "  %d records, %s in %v: %.0f records/s, %.2f MB/s\n",
		r.records, humanBytes(r.bytes), r.elapsed.Round(time.Millisecond), float64(r.records)/secs, float64(r.bytes)/1e6/secs)
	if len(r.lat) == 0 {
		return
	}
	p := percentiles(r.lat, 50, 90, 99)
	fmt.Fprintf(w, "  %s (%d): p50 %v  p90 %v  p99 %v  max %v\n",
		latLabel, len(r.lat), fmtDur(p[0]), fmtDur(p[1]), fmtDur(p[2]), fmtDur(slices.Max(r.lat)))
}

// percentiles sorts lat and returns the nearest-rank percentiles.
func percentiles(lat []time.Duration, ps ...float64) []time.Duration {
	slices.Sort(lat)
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		rank := int(float64(len(lat))*p/100+0.999999) - 1
		out[i] = lat[max(0, min(rank, len(lat)-1))]
	}
	return out
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// produceWorker sends each client's requests to targets in turn (each
// client starting at its own), each target the options of a call.
func produceWorker(b benchFlags, targets [][]client.TopicOption) worker {
	var clientNo atomic.Int64
	return func(ctx context.Context, c *client.Client, n int, res *benchResult) error {
		value := make([]byte, int(b.size))
		rand.Read(value)
		records := make([]*logv1.Record, b.batch)
		for i := range records {
			records[i] = benchRecord(b, value, i)
		}
		turn := int(clientNo.Add(1) - 1)
		next := func() []client.CallOption {
			turn++
			return callOptions(targets[turn%len(targets)])
		}
		switch b.mode {
		case "unary":
			for i := range n {
				t0 := time.Now()
				if _, err := c.ProduceRecords(ctx, []*logv1.Record{records[i%len(records)]}, next()...); err != nil {
					return err
				}
				res.lat = append(res.lat, time.Since(t0))
				res.records++
				res.bytes += int64(len(value))
			}
			return nil
		case "batch":
			for left := n; left > 0; {
				k := min(left, b.batch)
				t0 := time.Now()
				var err error
				if b.keySize > 0 {
					// Keys of several partitions: one request per partition.
					_, err = c.ProduceSplit(ctx, records[:k], next()...)
				} else {
					_, err = c.ProduceRecords(ctx, records[:k], next()...)
				}
				if err != nil {
					return err
				}
				res.lat = append(res.lat, time.Since(t0))
				res.records += int64(k)
				res.bytes += int64(k * len(value))
				left -= k
			}
			return nil
		default:
			return streamProduce(ctx, c, n, b.window, records, targets, turn, res)
		}
	}
}

// benchRecord is record i of a batch: the value, and a key and headers as
// --key-size and --headers ask.
func benchRecord(b benchFlags, value []byte, i int) *logv1.Record {
	r := &logv1.Record{Value: value}
	if b.keySize > 0 {
		r.Key = fmt.Appendf(nil, "%0*d", b.keySize, i)[:b.keySize]
	}
	for h := range b.headers {
		r.Headers = append(r.Headers, &logv1.Header{Key: fmt.Sprintf("header-%05d", h), Value: []byte("12345678")})
	}
	return r
}

// streamProduce pipelines requests of len(values) records through a
// Producer per target, sending to them in turn from the turn-th on, with
// at most about window unacknowledged.
func streamProduce(ctx context.Context, c *client.Client, n, window int, values []*logv1.Record, targets [][]client.TopicOption, turn int, res *benchResult) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	producers := make([]*client.Producer, len(targets))
	for i, t := range targets {
		opts := []client.ProducerOption{client.Ordered()}
		for _, o := range t {
			opts = append(opts, o)
		}
		p, err := c.NewProducer(ctx, window, opts...)
		if err != nil {
			return err
		}
		defer p.Close(ctx)
		producers[i] = p
	}
	type inflight struct {
		ack *client.Ack
		k   int
		t0  time.Time
	}
	pending := make(chan inflight, window)
	waited := make(chan error, 1)
	go func() {
		var failed error
		for f := range pending {
			if failed != nil {
				continue
			}
			if _, err := f.ack.Wait(context.Background()); err != nil { // the producer's ctx ends every wait
				failed = err
				cancel()
				continue
			}
			res.lat = append(res.lat, time.Since(f.t0))
			res.records += int64(f.k)
			for _, v := range values[:f.k] {
				res.bytes += int64(len(v.GetValue()))
			}
		}
		waited <- failed
	}()
	var sendErr error
	for left := n; left > 0; {
		k := min(left, len(values))
		t0 := time.Now()
		turn++
		ack, err := producers[turn%len(producers)].SendRecords(ctx, values[:k]...)
		if err != nil {
			sendErr = err
			break
		}
		pending <- inflight{ack, k, t0}
		left -= k
	}
	close(pending)
	werr := <-waited
	for _, p := range producers {
		p.Close(ctx)
	}
	if werr != nil {
		return werr
	}
	return sendErr
}

func consumeWorker(b benchFlags, from uint64) worker {
	return func(ctx context.Context, c *client.Client, n int, res *benchResult) error {
		// Records are counted, not kept, as a consumer that processes each
		// batch as it comes would.
		opts := []client.TailOption{client.MaxBatch(uint32(b.batch)), client.Until(from + uint64(n)), client.ReuseRecords()}
		for _, o := range b.tf.options() {
			opts = append(opts, o)
		}
		t0 := time.Now()
		err := c.TailBatches(ctx, from, func(records []*logv1.Record) error {
			for _, r := range records {
				res.records++
				res.bytes += int64(len(r.GetValue()))
			}
			now := time.Now()
			res.lat = append(res.lat, now.Sub(t0))
			t0 = now
			return nil
		}, opts...)
		if err != nil {
			return err
		}
		if res.records != int64(n) {
			return fmt.Errorf("ConsumeStream ended after %d of %d records", res.records, n)
		}
		return nil
	}
}
