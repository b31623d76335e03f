package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// consumeRange says what part of the log to read.
type consumeRange struct {
	from    uint64
	fromSet bool
	to      uint64 // exclusive; 0 with toSet false = no bound
	toSet   bool
	count   uint64 // 0 = no limit
	follow  bool
	fromEnd bool
}

func newConsumeCmd(e *env) *cobra.Command {
	var (
		cf     clientFlags
		r      consumeRange
		format string
		batch  uint32
	)
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Print records, one a line, from a range of offsets or live with --follow",
		Long: `Print records, one a line. Without --follow, reads from --from (default: the
lowest retained offset) up to the end of the log as it was when the command
started, or to --to (exclusive), or until --count records. With --follow,
keeps printing new records until interrupted (exit 0). --from-end starts at
the end (only new records); with --from N too, it starts N records before
the end.

Formats: text prints each value as it is; json prints
{"offset":N,"value":"<base64>","text":"<value, when valid UTF-8>"};
hex prints "<offset><TAB><hex of the value>".` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r.fromSet = cmd.Flags().Changed("from")
			r.toSet = cmd.Flags().Changed("to")
			if r.toSet && cmd.Flags().Changed("count") {
				return usagef("--to and --count exclude each other")
			}
			if r.toSet && r.fromSet && !r.fromEnd && r.to < r.from {
				return usagef("--to %d is before --from %d", r.to, r.from)
			}
			pr, err := newPrinter(format, e.stdout)
			if err != nil {
				return err
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			err = consume(cmd.Context(), c, r, batch, pr, e.stderr)
			if r.follow && errors.Is(err, context.Canceled) && cmd.Context().Err() != nil {
				return nil // interrupted while following: the normal way to stop
			}
			return err
		},
	}
	cf.register(cmd.Flags())
	f := cmd.Flags()
	f.Uint64Var(&r.from, "from", 0, "first offset (default: the lowest retained)")
	f.Uint64Var(&r.to, "to", 0, "stop before this offset")
	f.Uint64Var(&r.count, "count", 0, "stop after this many records")
	f.BoolVarP(&r.follow, "follow", "f", false, "keep printing new records until interrupted")
	f.BoolVar(&r.fromEnd, "from-end", false, "start at the end of the log (or --from records before it)")
	f.StringVar(&format, "format", "text", "output format: text, json or hex")
	f.Uint32Var(&batch, "max-batch", 256, "most records per stream message")
	return cmd
}

// consume prints the range. With --follow it survives the server going
// away (a restart, a failover): it reconnects with backoff and resumes
// after the last record it printed, so nothing is skipped or repeated.
func consume(ctx context.Context, c *conn, r consumeRange, batch uint32, pr *printer, warn io.Writer) error {
	req := &logv1.ConsumeStreamRequest{Offset: r.from, FromEnd: r.fromEnd, MaxBatch: batch}
	var end uint64 // exclusive bound; 0 with bounded false = none
	bounded := false
	if !r.follow || !r.fromSet {
		statsCtx, cancel := unaryContext(ctx, c.timeout)
		st, err := c.GetStats(statsCtx, &logv1.GetStatsRequest{})
		cancel()
		if err != nil {
			return err
		}
		if !r.fromSet && !r.fromEnd {
			req.Offset = st.GetLowestOffset()
		}
		if !r.follow {
			end, bounded = st.GetNextOffset(), true
			start := req.Offset
			if r.fromEnd {
				start = st.GetNextOffset() - min(r.from, st.GetNextOffset()-st.GetLowestOffset())
				req.Offset, req.FromEnd = start, false // the same, without a race
			}
			if start >= end {
				return nil
			}
		}
	}
	if r.toSet && (!bounded || r.to < end) {
		end, bounded = r.to, true
		if req.Offset >= end && !r.fromEnd {
			return nil
		}
	}

	var n uint64
	emit := func(rec *logv1.Record) (done bool, err error) {
		if bounded && rec.GetOffset() >= end {
			return true, nil
		}
		if err := pr.print(rec); err != nil {
			return true, err
		}
		n++
		return (r.count > 0 && n >= r.count) || (bounded && rec.GetOffset()+1 >= end), nil
	}
	backoff := followBackoffMin
	for {
		printed, done, err := consumeStream(ctx, c, req, emit, pr)
		if done || ctx.Err() != nil {
			if ctx.Err() != nil && (err == nil || connect.CodeOf(err) == connect.CodeCanceled) {
				return ctx.Err()
			}
			return err
		}
		if !r.follow || !reconnectable(err) {
			if err == nil && bounded {
				return fmt.Errorf("stream ended at %d records, before offset %d", n, end)
			}
			return err
		}
		if printed != nil {
			req.Offset, req.FromEnd = printed.GetOffset()+1, false
			backoff = followBackoffMin
		}
		fmt.Fprintf(warn, "proglog: the stream ended (%v); reconnecting from offset %d in %v\n", err, req.GetOffset(), backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, followBackoffMax)
	}
}

// How long --follow waits before reconnecting: doubling from min to max.
const (
	followBackoffMin = 100 * time.Millisecond
	followBackoffMax = 5 * time.Second
)

// reconnectable reports whether a follow stream that ended with err (nil:
// the server closed it) is worth opening again: the server went away or
// is shutting down, not a refusal such as a denied subject.
func reconnectable(err error) bool {
	if err == nil {
		return true
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal, connect.CodeAborted, connect.CodeCanceled:
		return true
	}
	return false
}

// consumeStream runs one ConsumeStream and hands its records to emit. It
// returns the last record printed (nil if none), whether emit is done, and
// how the stream ended.
func consumeStream(ctx context.Context, c *conn, req *logv1.ConsumeStreamRequest,
	emit func(*logv1.Record) (bool, error), pr *printer) (printed *logv1.Record, done bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ConsumeStream(ctx, req)
	if err != nil {
		return nil, false, err
	}
	defer stream.Close()
	for stream.Receive() {
		msg := stream.Msg()
		recs := msg.GetRecords()
		if len(recs) == 0 && msg.GetRecord() != nil {
			recs = []*logv1.Record{msg.GetRecord()}
		}
		for _, rec := range recs {
			d, err := emit(rec)
			if err != nil {
				return printed, true, err
			}
			if d {
				return printed, true, pr.flush()
			}
			printed = rec
		}
		if err := pr.flush(); err != nil {
			return printed, true, err
		}
	}
	return printed, false, stream.Err()
}

func unaryContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// printer writes records in one of the output formats.
type printer struct {
	w      *bufio.Writer
	format string
}

func newPrinter(format string, w io.Writer) (*printer, error) {
	switch format {
	case "text", "json", "hex":
		return &printer{w: bufio.NewWriterSize(w, 64<<10), format: format}, nil
	}
	return nil, usagef("--format %q: want text, json or hex", format)
}

// jsonRecord is the json output format of one record.
type jsonRecord struct {
	Offset uint64  `json:"offset"`
	Value  string  `json:"value"`          // base64, like protobuf JSON
	Text   *string `json:"text,omitempty"` // the value itself when it is valid UTF-8
}

func (p *printer) print(rec *logv1.Record) error {
	v := rec.GetValue()
	switch p.format {
	case "text":
		p.w.Write(v)
		return p.w.WriteByte('\n')
	case "hex":
		p.w.WriteString(strconv.FormatUint(rec.GetOffset(), 10))
		p.w.WriteByte('\t')
		p.w.WriteString(hex.EncodeToString(v))
		return p.w.WriteByte('\n')
	default:
		jr := jsonRecord{Offset: rec.GetOffset(), Value: base64.StdEncoding.EncodeToString(v)}
		if utf8.Valid(v) {
			s := string(v)
			jr.Text = &s
		}
		b, err := json.Marshal(jr)
		if err != nil {
			return err
		}
		p.w.Write(b)
		return p.w.WriteByte('\n')
	}
}

func (p *printer) flush() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
