package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// maxLineBytes bounds one stdin line; the server's own record limit
// (1 MiB by default) rejects long ones with a clear message anyway.
const maxLineBytes = 16 << 20

func newProduceCmd(e *env) *cobra.Command {
	var (
		cf         clientFlags
		quiet      bool
		batch      int
		batchBytes byteSize = 1 << 20
	)
	cmd := &cobra.Command{
		Use:   "produce [VALUE...]",
		Short: "Append records: the arguments, or else one per line of standard input",
		Long: `Append records to the log: each argument is one record, or, without
arguments, each line of standard input (without its newline). Records go in
batches over one pipelined ProduceStream, and the offset of each record is
printed, one a line, once the server acknowledged it as durable.` + "\n" + exitCodesHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch < 1 {
				return usagef("--batch must be at least 1")
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			out := io.Discard
			if !quiet {
				out = e.stdout
			}
			var src lineSource
			if len(args) > 0 {
				src = argSource(args)
			} else {
				src = readerSource(e.stdin)
			}
			return produce(cmd.Context(), c, src, batch, int(batchBytes), out)
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not print offsets")
	cmd.Flags().IntVar(&batch, "batch", 100, "most records in one request")
	cmd.Flags().Var(&batchBytes, "batch-bytes", "most value bytes in one request (a bigger record goes alone)")
	return cmd
}

// lineSource starts a goroutine feeding records into a channel, which it
// closes at the end. Errors (other than io.EOF) go to errc, which the
// goroutine also closes. The goroutine stops early when ctx is done (after
// its current read returns: a read from a terminal cannot be interrupted).
type lineSource func(ctx context.Context, out chan<- []byte, errc chan<- error)

func argSource(args []string) lineSource {
	return func(ctx context.Context, out chan<- []byte, errc chan<- error) {
		defer close(errc)
		defer close(out)
		for _, a := range args {
			select {
			case out <- []byte(a):
			case <-ctx.Done():
				return
			}
		}
	}
}

func readerSource(r io.Reader) lineSource {
	return func(ctx context.Context, out chan<- []byte, errc chan<- error) {
		defer close(errc)
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
		for sc.Scan() {
			line := append([]byte(nil), sc.Bytes()...)
			select {
			case out <- line:
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			errc <- fmt.Errorf("read standard input: %w", err)
		}
	}
}

// produce sends records in batches over one ProduceStream, reading acks
// as they come, and prints every acknowledged offset to out.
func produce(ctx context.Context, c *conn, src lineSource, batch, batchBytes int, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	lines := make(chan []byte, batch)
	srcErr := make(chan error, 1)
	// The source stops when ctx is done, but one blocked reading a terminal
	// only notices after its read returns, so it is not waited for: the
	// process exits soon after produce returns.
	go src(ctx, lines, srcErr)
	b := &batcher{lines: lines, maxRecords: batch, maxBytes: batchBytes}

	// Take the first batch before opening the stream: nothing to send, no RPC.
	first, ok := b.next(ctx)
	if !ok {
		if err := ctx.Err(); err != nil {
			return err
		}
		return <-srcErr
	}

	stream, err := c.ProduceStream(ctx)
	if err != nil {
		return err
	}
	// sent carries the size of each request, in order, to the ack reader;
	// its capacity bounds the requests in flight.
	sent := make(chan int, 64)
	sendDone := make(chan error, 1)
	go func() {
		defer close(sent)
		sendDone <- sendBatches(ctx, stream.Send, stream.CloseRequest, b, first, sent)
	}()

	ackErr := readAcks(stream.Receive, sent, out)
	if ackErr != nil {
		cancel() // stops the sender and the source
		for range sent {
		}
	}
	sendErr := <-sendDone
	closeErr := stream.CloseResponse()
	if ackErr != nil {
		return ackErr
	}
	if sendErr != nil {
		return sendErr
	}
	if err := <-srcErr; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return closeErr
}

// readAcks reads one ack per request size on sent and prints the offsets.
func readAcks(receive func() (*logv1.ProduceStreamResponse, error), sent <-chan int, out io.Writer) error {
	w := bufio.NewWriter(out)
	for n := range sent {
		resp, err := receive()
		if err != nil {
			return err
		}
		if resp.GetCount() != 0 && int(resp.GetCount()) != n {
			return fmt.Errorf("server acknowledged %d records of a request of %d", resp.GetCount(), n)
		}
		for i := range uint64(n) {
			w.WriteString(strconv.FormatUint(resp.GetOffset()+i, 10))
			w.WriteByte('\n')
		}
		// Flush per ack: a consumer of this output sees offsets as they
		// become durable.
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write offsets: %w", err)
		}
	}
	return nil
}

// sendBatches sends first and then every further batch, then closes the
// request side. It reports each request's size on sent before sending it.
func sendBatches(ctx context.Context, send func(*logv1.ProduceStreamRequest) error, closeRequest func() error, b *batcher, first [][]byte, sent chan<- int) error {
	values := first
	for {
		req := &logv1.ProduceStreamRequest{Records: make([]*logv1.Record, len(values))}
		for i, v := range values {
			req.Records[i] = &logv1.Record{Value: v}
		}
		select {
		case sent <- len(values):
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := send(req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the server ended the stream; Receive reports why
			}
			return err
		}
		var ok bool
		if values, ok = b.next(ctx); !ok {
			if err := ctx.Err(); err != nil {
				return err
			}
			return closeRequest()
		}
	}
}

// batcher groups records into requests.
type batcher struct {
	lines      <-chan []byte
	maxRecords int
	maxBytes   int
	carry      []byte // a record that did not fit the previous batch
	hasCarry   bool
}

// next waits for one record, then takes whatever else is ready, up to the
// limits: a pipe fills batches, a person typing gets each line sent at
// once. ok is false when the source is exhausted or ctx is done.
func (b *batcher) next(ctx context.Context) (batch [][]byte, ok bool) {
	if b.hasCarry {
		batch, b.carry, b.hasCarry = append(batch, b.carry), nil, false
	} else {
		select {
		case v, open := <-b.lines:
			if !open {
				return nil, false
			}
			batch = append(batch, v)
		case <-ctx.Done():
			return nil, false
		}
	}
	size := len(batch[0])
	for len(batch) < b.maxRecords && size < b.maxBytes {
		select {
		case v, open := <-b.lines:
			if !open {
				return batch, true
			}
			if size+len(v) > b.maxBytes {
				b.carry, b.hasCarry = v, true
				return batch, true
			}
			batch = append(batch, v)
			size += len(v)
		default:
			return batch, true
		}
	}
	return batch, true
}
