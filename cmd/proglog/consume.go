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
			err = consume(cmd.Context(), c, r, batch, pr)
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

func consume(ctx context.Context, c *conn, r consumeRange, batch uint32, pr *printer) error {
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ConsumeStream(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
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
	for stream.Receive() {
		msg := stream.Msg()
		recs := msg.GetRecords()
		if len(recs) == 0 && msg.GetRecord() != nil {
			recs = []*logv1.Record{msg.GetRecord()}
		}
		for _, rec := range recs {
			if done, err := emit(rec); done || err != nil {
				if ferr := pr.flush(); err == nil {
					err = ferr
				}
				return err
			}
		}
		if err := pr.flush(); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		if connect.CodeOf(err) == connect.CodeCanceled && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if bounded {
		return fmt.Errorf("stream ended at %d records, before offset %d", n, end)
	}
	return nil
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
