package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// consumeFlags are consume's flags as given.
type consumeFlags struct {
	from     uint64
	to       uint64
	count    uint64
	follow   bool
	fromEnd  bool
	fromTime string
	since    time.Duration
}

// consumeRange says what part of the log to read.
type consumeRange struct {
	from    uint64
	fromSet bool
	to      uint64 // exclusive; 0 with toSet false = no bound
	toSet   bool
	count   uint64 // 0 = no limit
	follow  bool
	fromEnd bool
	at      time.Time // with byTime: start at the first record at or after it
	byTime  bool
}

// rangeOf checks the flags against each other; changed says which were
// given (on the command line, in the environment or the config file) and
// now is the clock --since counts back from.
func (f consumeFlags) rangeOf(changed func(string) bool, now time.Time) (consumeRange, error) {
	r := consumeRange{
		from: f.from, fromSet: changed("from"), to: f.to, toSet: changed("to"),
		count: f.count, follow: f.follow, fromEnd: f.fromEnd,
	}
	if r.toSet && changed("count") {
		return r, usagef("--to and --count exclude each other")
	}
	timeFlag := ""
	switch {
	case changed("from-time") && changed("since"):
		return r, usagef("--from-time and --since exclude each other")
	case changed("from-time"):
		timeFlag = "--from-time"
		t, err := time.Parse(time.RFC3339Nano, f.fromTime)
		if err != nil {
			return r, usagef("--from-time %q: want an RFC 3339 time such as 2026-11-30T10:00:00Z", f.fromTime)
		}
		r.at, r.byTime = t, true
	case changed("since"):
		timeFlag = "--since"
		if f.since < 0 {
			return r, usagef("--since %v: want a duration back from now, such as 10m", f.since)
		}
		r.at, r.byTime = now.Add(-f.since), true
	}
	if r.byTime && (r.fromSet || r.fromEnd) {
		return r, usagef("%s excludes --from and --from-end: a read starts at an offset, at the end or at a time", timeFlag)
	}
	if r.toSet && r.fromSet && !r.fromEnd && r.to < r.from {
		return r, usagef("--to %d is before --from %d", r.to, r.from)
	}
	return r, nil
}

func newConsumeCmd(e *env) *cobra.Command {
	var (
		cf     clientFlags
		f      consumeFlags
		format string
		meta   bool
		batch  uint32
		tf     topicFlags
	)
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Print records, one a line, from a range of offsets or live with --follow",
		Long: `Print records, one a line. Without --follow, reads from --from (default: the
lowest retained offset) up to the end of the log as it was when the command
started, or to --to (exclusive), or until --count records. With --follow,
keeps printing new records until interrupted (exit 0), reconnecting (to
another node of the cluster if need be) and resuming after the last record
printed when a server goes away. --from-end starts at the end (only new
records); with --from N too, it starts N records before the end.
--from-time T starts at the first record whose time is at or after T (RFC
3339, e.g. 2026-11-30T10:00:00Z), --since D at the first one of the last D
(e.g. 10m); neither goes with --from or --from-end.

consume reads one partition: --partition P (default 0) of --topic T (default
the topic "default"); offsets are the partition's.

Formats (times are RFC 3339 in UTC with nanoseconds):
  text  each value as it is; with --meta, "<time><TAB><key><TAB><headers><TAB><value>",
        headers as k=v joined by ",", key and header values as they are
  json  {"offset":N,"value":"<base64>","text":"<value, when valid UTF-8>",
        "key":"<base64>","key_text":"<key, when valid UTF-8>",
        "headers":[{"key":"k","value":"<base64>","text":"<value, when valid UTF-8>"}],
        "time":"<time>"}; key, key_text and headers only when set, time when known
  hex   "<offset><TAB><hex of the value>"; with --meta,
        "<offset><TAB><time><TAB><hex of the key><TAB><headers><TAB><hex of the value>",
        headers as <hex of k>=<hex of v> joined by ","` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.rangeOf(cmd.Flags().Changed, time.Now())
			if err != nil {
				return err
			}
			pr, err := newPrinter(format, meta, e.stdout)
			if err != nil {
				return err
			}
			rp := oneShotRetry
			if r.follow {
				rp = followRetry
			}
			c, err := cf.dial(cmd.Context(), rp)
			if err != nil {
				return err
			}
			defer c.Close()
			err = consume(cmd.Context(), c, cf.timeout, r, batch, pr, e.stderr, tf.options()...)
			if r.follow && errors.Is(err, context.Canceled) && cmd.Context().Err() != nil {
				return nil // interrupted while following: the normal way to stop
			}
			return err
		},
	}
	cf.register(cmd.Flags(), e)
	fl := cmd.Flags()
	fl.Uint64Var(&f.from, "from", 0, "first offset (default: the lowest retained)")
	fl.Uint64Var(&f.to, "to", 0, "stop before this offset")
	fl.Uint64Var(&f.count, "count", 0, "stop after this many records")
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep printing new records until interrupted")
	fl.BoolVar(&f.fromEnd, "from-end", false, "start at the end of the log (or --from records before it)")
	fl.StringVar(&f.fromTime, "from-time", "", "start at the first record at or after this RFC 3339 time")
	fl.DurationVar(&f.since, "since", 0, "start at the first record of the last this long (e.g. 10m)")
	fl.StringVar(&format, "format", "text", "output format: text, json or hex")
	fl.BoolVar(&meta, "meta", false, "text and hex: print each record's time, key and headers before its value (json always has them)")
	fl.Uint32Var(&batch, "max-batch", 256, "most records per stream message")
	tf.register(fl, "the partition to read (default 0)")
	return cmd
}

// errEnough stops a tail once --count records are printed.
var errEnough = errors.New("enough records")

// consume prints the range. Reads go through the client's Tail: with
// --follow it survives servers going away (a restart, a failover),
// reconnecting with backoff and resuming after the last record printed, so
// nothing is skipped or repeated; warn hears of each reconnection. where
// names the topic and partition.
func consume(ctx context.Context, c *client.Client, timeout time.Duration, r consumeRange, batch uint32, pr *printer, warn io.Writer,
	where ...client.TopicOption) error {
	start := r.from
	var end uint64 // exclusive bound; 0 with bounded false = none
	bounded := false
	if !r.follow || r.fromEnd || (!r.fromSet && !r.byTime) {
		statsCtx, cancel := unaryContext(ctx, timeout)
		st, err := c.Stats(statsCtx, callOptions(where)...)
		cancel()
		if err != nil {
			return err
		}
		switch {
		case r.fromEnd:
			start = st.GetNextOffset() - min(r.from, st.GetNextOffset()-st.GetLowestOffset())
		case !r.fromSet && !r.byTime:
			start = st.GetLowestOffset()
		}
		if !r.follow {
			end, bounded = st.GetNextOffset(), true
		}
	}
	if r.toSet && (!bounded || r.to < end) {
		end, bounded = r.to, true
	}
	opts := []client.TailOption{
		client.MaxBatch(batch),
		client.OnResume(func(res client.Resume) {
			fmt.Fprintf(warn, "proglog: the stream ended (%s); reconnecting from offset %d in %v\n",
				oneLine(message(res.Err)), res.Next, res.Wait.Round(time.Millisecond))
		}),
	}
	for _, o := range where {
		opts = append(opts, o)
	}
	if bounded {
		if !r.byTime && start >= end {
			return nil
		}
		opts = append(opts, client.Until(end))
	}
	if r.byTime {
		start = 0
		opts = append(opts, client.FromTime(r.at))
	}
	// Each record is printed (copied into the output) before the next
	// message arrives.
	opts = append(opts, client.ReuseRecords())
	var n uint64
	err := c.TailBatches(ctx, start, func(records []*logv1.Record) error {
		for _, rec := range records {
			if err := pr.print(rec); err != nil {
				return err
			}
			n++
			if r.count > 0 && n >= r.count {
				if err := pr.flush(); err != nil {
					return err
				}
				return errEnough
			}
		}
		// Flush per message: a reader of this output sees records as
		// they arrive.
		return pr.flush()
	}, opts...)
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}
