package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// maxLineBytes bounds one stdin line; the server's own record limit
// (1 MiB by default) rejects long ones with a clear message anyway.
const maxLineBytes = 16 << 20

// produceWindow is how many requests produce keeps unacknowledged.
const produceWindow = 64

func newProduceCmd(e *env) *cobra.Command {
	var (
		cf         clientFlags
		quiet      bool
		batch      int
		batchBytes byteSize = 1 << 20
		rf         recordFlags
		tf         topicFlags
	)
	cmd := &cobra.Command{
		Use:   "produce [VALUE...]",
		Short: "Append records: the arguments, or else one per line of standard input",
		Long: `Append records to the log: each argument is one record, or, without
arguments, each line of standard input (without its newline). Records go in
batches over one pipelined ProduceStream to the leader, and the offset of
each record is printed, one a line, once the server acknowledged it as
durable. At the first failure nothing more is sent and produce exits 1.

--record-key K and --header k=v (repeatable) give every record that key and
those headers. With --key-separator SEP, each line (or argument) is
<key>SEP<value>, split at the first SEP; a line without SEP is an error
naming it, and neither it nor any line after it is sent. Header keys are
non-empty UTF-8 of at most 256 bytes. (--key is the client's TLS key, as
for every client command.)

--topic T appends to topic T (default: the topic "default"). --partition P
sends every record to partition P; without it each keyed record goes to the
partition its key maps to (Kafka's default partitioner: murmur2 of the key
modulo the topic's partition count), and records without a key to the
partition the server picks for each request. With --topic and without
--partition, each printed line is "<partition><TAB><offset>".` + "\n" + exitCodesHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch < 1 {
				return usagef("--batch must be at least 1")
			}
			tmpl, err := rf.template(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			cfg, err := cf.config(oneShotRetry)
			if err != nil {
				return err
			}
			out := io.Discard
			if !quiet {
				out = e.stdout
			}
			var src lineSource
			if len(args) > 0 {
				src = argSource(args, tmpl)
			} else {
				src = readerSource(e.stdin, tmpl)
			}
			dial := func(ctx context.Context) (*client.Client, error) { return cf.connect(ctx, cfg) }
			opts := []client.ProducerOption{client.Ordered()}
			for _, o := range tf.options() {
				opts = append(opts, o)
			}
			showPartition := cmd.Flags().Changed("topic") && !tf.partition.set
			return produce(cmd.Context(), dial, src, batch, int(batchBytes), out, showPartition, opts...)
		},
	}
	cf.register(cmd.Flags(), e)
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "do not print offsets")
	f.IntVar(&batch, "batch", 100, "most records in one request")
	f.Var(&batchBytes, "batch-bytes", "most record bytes (values, keys, headers) in one request (a bigger record goes alone)")
	f.StringVar(&rf.key, "record-key", "", "the key of every record")
	f.StringArrayVar(&rf.headers, "header", nil, "a header k=v of every record (repeatable)")
	f.StringVar(&rf.separator, "key-separator", "", "each line is <key><SEP><value>, split at the first SEP")
	tf.register(f, "the partition of every record (default: by key, or the server's pick)")
	return cmd
}

// recordFlags are produce's flags that shape records.
type recordFlags struct {
	key       string
	headers   []string
	separator string
}

// recordTemplate makes records of lines.
type recordTemplate struct {
	key       []byte
	headers   []*logv1.Header
	separator []byte // nil: a line is the value
}

// template checks the flags; changed says which were given.
func (f recordFlags) template(changed func(string) bool) (recordTemplate, error) {
	var t recordTemplate
	if changed("key-separator") {
		if f.separator == "" {
			return t, usagef("--key-separator must not be empty")
		}
		if changed("record-key") {
			return t, usagef("--record-key and --key-separator exclude each other: every record's key, or a key per line")
		}
		t.separator = []byte(f.separator)
	}
	if changed("record-key") {
		t.key = []byte(f.key)
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			return t, usagef("--header %q: want key=value", h)
		}
		t.headers = append(t.headers, &logv1.Header{Key: k, Value: []byte(v)})
	}
	if err := client.ValidateRecord(&logv1.Record{Headers: t.headers}); err != nil {
		return t, usagef("--header: %v", err)
	}
	return t, nil
}

// record makes the record of one line; where names it in an error.
func (t recordTemplate) record(line []byte, where func() string) (*logv1.Record, error) {
	r := &logv1.Record{Value: line, Key: t.key, Headers: t.headers}
	if t.separator != nil {
		key, value, ok := bytes.Cut(line, t.separator)
		if !ok {
			return nil, fmt.Errorf("%s has no key separator %q: neither it nor anything after it was sent", where(), t.separator)
		}
		r.Key, r.Value = key, value
	}
	return r, nil
}

// lineSource starts a goroutine feeding records into a channel, which it
// closes at the end. Errors (other than io.EOF) go to errc, which the
// goroutine also closes. The goroutine stops early when ctx is done (after
// its current read returns: a read from a terminal cannot be interrupted).
type lineSource func(ctx context.Context, out chan<- *logv1.Record, errc chan<- error)

func argSource(args []string, t recordTemplate) lineSource {
	return func(ctx context.Context, out chan<- *logv1.Record, errc chan<- error) {
		defer close(errc)
		defer close(out)
		for i, a := range args {
			r, err := t.record([]byte(a), func() string { return fmt.Sprintf("argument %d", i+1) })
			if err != nil {
				errc <- err
				return
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}
}

func readerSource(rd io.Reader, t recordTemplate) lineSource {
	return func(ctx context.Context, out chan<- *logv1.Record, errc chan<- error) {
		defer close(errc)
		defer close(out)
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
		for n := 1; sc.Scan(); n++ {
			r, err := t.record(append([]byte(nil), sc.Bytes()...), func() string { return fmt.Sprintf("standard input line %d", n) })
			if err != nil {
				errc <- err
				return
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			errc <- fmt.Errorf("read standard input: %w", err)
		}
	}
}

// sentRequest is one request the producer sent, for the ack printer.
type sentRequest struct {
	ack *client.Ack
}

// produce sends records in batches through one client.Producer made with
// opts (client.Ordered, and the topic and partition), printing every
// acknowledged offset to out as acks come, after its partition when
// showPartition. It connects (dial) only once there is a record to send.
// The first failure stops it: nothing is sent after it.
func produce(ctx context.Context, dial func(context.Context) (*client.Client, error), src lineSource, batch, batchBytes int,
	out io.Writer, showPartition bool, opts ...client.ProducerOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	lines := make(chan *logv1.Record, batch)
	srcErr := make(chan error, 1)
	// The source stops when ctx is done, but one blocked reading a terminal
	// only notices after its read returns, so it is not waited for: the
	// process exits soon after produce returns.
	go src(ctx, lines, srcErr)
	b := &batcher{lines: lines, maxRecords: batch, maxBytes: batchBytes}

	// Take the first batch before connecting: nothing to send, no RPC.
	records, ok := b.next(ctx)
	if !ok {
		if err := ctx.Err(); err != nil {
			return err
		}
		return <-srcErr
	}
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	p, err := c.NewProducer(ctx, produceWindow, opts...)
	if err != nil {
		return err
	}

	acks := make(chan sentRequest, produceWindow)
	ackErr := make(chan error, 1)
	go func() { ackErr <- printAcks(acks, out, showPartition, cancel) }()
	var sendErr error
	exhausted := false // the source is done: srcErr holds its verdict
	for {
		ack, err := p.SendRecords(ctx, records...)
		if err != nil {
			sendErr = err
			break
		}
		acks <- sentRequest{ack}
		if records, ok = b.next(ctx); !ok {
			exhausted = ctx.Err() == nil
			break
		}
	}
	close(acks)
	aerr := <-ackErr
	closeErr := p.Close(ctx)
	switch {
	case aerr != nil:
		return aerr
	case sendErr != nil:
		return sendErr
	}
	if exhausted {
		if err := <-srcErr; err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return closeErr
}

// printAcks waits for each request's ack, in order, and prints its
// offsets, each after its partition when showPartition. At the first
// failure it calls stop (which ends the producer and the source) and
// returns that failure once acks is closed. A request split by partition
// may fail in part: the offsets of its records that were appended are
// printed before it stops.
func printAcks(acks <-chan sentRequest, out io.Writer, showPartition bool, stop func()) error {
	w := bufio.NewWriter(out)
	var failed error
	for s := range acks {
		if failed != nil {
			continue
		}
		_, err := s.ack.Wait(context.Background()) // the producer's ctx ends every wait
		for _, a := range s.ack.Appended() {
			if a.Err != nil {
				continue
			}
			if showPartition {
				w.WriteString(strconv.Itoa(a.Partition))
				w.WriteByte('\t')
			}
			w.WriteString(strconv.FormatUint(a.Offset, 10))
			w.WriteByte('\n')
		}
		// Flush per ack: a consumer of this output sees offsets as they
		// become durable.
		if ferr := w.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("write offsets: %w", ferr)
		}
		if err != nil {
			failed = err
			stop()
		}
	}
	return failed
}

// recordBytes is what a record weighs in a request, near enough.
func recordBytes(r *logv1.Record) int {
	n := len(r.GetValue()) + len(r.GetKey())
	for _, h := range r.GetHeaders() {
		n += len(h.GetKey()) + len(h.GetValue())
	}
	return n
}

// batcher groups records into requests.
type batcher struct {
	lines      <-chan *logv1.Record
	maxRecords int
	maxBytes   int
	carry      *logv1.Record // a record that did not fit the previous batch
}

// next waits for one record, then takes whatever else is ready, up to the
// limits: a pipe fills batches, a person typing gets each line sent at
// once. ok is false when the source is exhausted or ctx is done.
func (b *batcher) next(ctx context.Context) (batch []*logv1.Record, ok bool) {
	if b.carry != nil {
		batch, b.carry = append(batch, b.carry), nil
	} else {
		select {
		case r, open := <-b.lines:
			if !open {
				return nil, false
			}
			batch = append(batch, r)
		case <-ctx.Done():
			return nil, false
		}
	}
	size := recordBytes(batch[0])
	for len(batch) < b.maxRecords && size < b.maxBytes {
		select {
		case r, open := <-b.lines:
			if !open {
				return batch, true
			}
			if size+recordBytes(r) > b.maxBytes {
				b.carry = r
				return batch, true
			}
			batch = append(batch, r)
			size += recordBytes(r)
		default:
			return batch, true
		}
	}
	return batch, true
}
