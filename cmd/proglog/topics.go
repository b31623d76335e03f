package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/client"
)

// cmdLineOnly marks a flag that applyDefaults leaves alone: it is taken
// from the command line only, never from PROGLOG_<FLAG> or the config
// file. The topic settings share their names with serve's node-wide
// defaults (--retention-bytes, --retention-age, --max-record-bytes), which
// an operator sets in the environment or the config file for serve; those
// must not quietly become a topic's settings.
const cmdLineOnly = "proglog_cmdline_only"

func markCmdLineOnly(f *pflag.FlagSet, names ...string) {
	for _, n := range names {
		if err := f.SetAnnotation(n, cmdLineOnly, []string{"true"}); err != nil {
			panic(err)
		}
	}
}

func newTopicsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create, list, describe, update and delete topics",
		Long: `Manage topics: named logs, each split into partitions replicated on
--replication-factor nodes. Every request that names no topic (produce or
consume without --topic) uses the topic "default", which always exists and
cannot be deleted.

  proglog topics create orders --partitions 6 --retention-age 168h
  proglog topics list
  proglog topics describe orders [--format json]
  proglog topics update orders --retention-bytes 10GiB
  proglog topics delete orders
  proglog topics move orders --partition 3 --from n1 --to n4

The settings flags (--retention-bytes, --retention-age, --max-record-bytes)
are taken from the command line only: the PROGLOG_ variables and config file
lines of those names configure serve's node-wide defaults, not topics. A
setting create is not given (or given 0) takes the node's default.` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("topics needs a subcommand: create, list, describe, update, delete or move")
		},
	}
	cmd.AddCommand(newTopicsCreateCmd(e), newTopicsListCmd(e), newTopicsDescribeCmd(e),
		newTopicsUpdateCmd(e), newTopicsDeleteCmd(e), newTopicsMoveCmd(e))
	return cmd
}

// topicSettings are the flags of a topic's settings.
type topicSettings struct {
	retentionBytes byteSize
	retentionAge   time.Duration
	maxRecordBytes byteSize
}

// register adds the flags; zero says what 0 means for retention.
func (s *topicSettings) register(f *pflag.FlagSet, zero string) {
	f.Var(&s.retentionBytes, "retention-bytes", "delete a partition's oldest segments beyond this size (0 = "+zero+")")
	f.DurationVar(&s.retentionAge, "retention-age", 0, "delete segments whose newest record is older (0 = "+zero+")")
	f.Var(&s.maxRecordBytes, "max-record-bytes", "largest record (key, headers and value), at most the node's --max-record-bytes (0 = the node's)")
	markCmdLineOnly(f, "retention-bytes", "retention-age", "max-record-bytes")
}

func (s *topicSettings) check() error {
	if s.retentionAge < 0 {
		return usagef("--retention-age %v must not be negative", s.retentionAge)
	}
	if s.maxRecordBytes > math.MaxUint32 {
		return usagef("--max-record-bytes %s is too large", formatByteSize(int64(s.maxRecordBytes)))
	}
	return nil
}

// topicCmd is a topics subcommand: it checks its flags (check), connects
// and makes one call, and prints what call returns.
func topicCmd(e *env, cmd *cobra.Command, cf *clientFlags, check func(cmd *cobra.Command, args []string) error,
	call func(ctx context.Context, c *client.Client, args []string) (string, error)) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if check != nil {
			if err := check(cmd, args); err != nil {
				return err
			}
		}
		c, err := cf.dial(cmd.Context(), oneShotRetry)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := unaryContext(cmd.Context(), cf.timeout)
		defer cancel()
		out, err := call(ctx, c, args)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(e.stdout, out)
		return err
	}
	cf.register(cmd.Flags(), e)
	return cmd
}

// wantTopicName checks the one argument, a topic name.
func wantTopicName(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) != 1:
		return fmt.Errorf("%s takes one argument, the topic's name; got %d", cmd.CommandPath(), len(args))
	case args[0] == "":
		return fmt.Errorf("%s: the topic's name is empty", cmd.CommandPath())
	}
	return nil
}

func newTopicsCreateCmd(e *env) *cobra.Command {
	var (
		cf                     clientFlags
		s                      topicSettings
		partitions, replFactor int
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic (and print it as created)",
		Long: `Create a topic of --partitions partitions (default 1), each replicated on
--replication-factor nodes (default: min(3, the cluster's nodes); at most
the cluster's nodes), with the settings given. Fails (exit 1) if the name is
taken. Names are 1 to 249 bytes of [a-zA-Z0-9._-].` + "\n" + exitCodesHelp,
		Args: wantTopicName,
	}
	check := func(*cobra.Command, []string) error {
		if partitions < 0 || partitions > math.MaxUint32 {
			return usagef("--partitions %d: want a positive count", partitions)
		}
		if replFactor < 0 || replFactor > math.MaxUint32 {
			return usagef("--replication-factor %d: want a positive count", replFactor)
		}
		return s.check()
	}
	topicCmd(e, cmd, &cf, check, func(ctx context.Context, c *client.Client, args []string) (string, error) {
		t, err := c.CreateTopic(ctx, client.TopicSpec{
			Name: args[0], Partitions: partitions, ReplicationFactor: replFactor,
			Config: client.TopicConfig{
				RetentionBytes: uint64(s.retentionBytes),
				RetentionAge:   s.retentionAge,
				MaxRecordBytes: uint32(s.maxRecordBytes),
			},
		})
		if err != nil {
			return "", err
		}
		return formatTopic(t), nil
	})
	f := cmd.Flags()
	f.IntVar(&partitions, "partitions", 0, "partitions (0 = the server's default, 1)")
	f.IntVar(&replFactor, "replication-factor", 0, "nodes holding each partition (0 = min(3, nodes))")
	s.register(f, "the node's default")
	return cmd
}

func newTopicsListCmd(e *env) *cobra.Command {
	var (
		cf     clientFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the topics you may produce to or consume from",
		Long: `List the topics the caller may produce to or consume from, by name: a
table, or with --format json an array of objects as "topics describe
--format json" gives their "topic".` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
	}
	topicCmd(e, cmd, &cf, func(*cobra.Command, []string) error { return checkFormat(format) },
		func(ctx context.Context, c *client.Client, _ []string) (string, error) {
			topics, err := c.ListTopics(ctx)
			if err != nil {
				return "", err
			}
			if format == "json" {
				out := make([]jsonTopic, len(topics))
				for i, t := range topics {
					out[i] = jsonTopicOf(t)
				}
				return marshalLine(out)
			}
			var b strings.Builder
			w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tPARTITIONS\tREPLICATION\tRETENTION-BYTES\tRETENTION-AGE\tMAX-RECORD-BYTES")
			for _, t := range topics {
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\n", t.Name, t.Partitions, t.ReplicationFactor,
					orZero(t.Config.RetentionBytes, "-", fmtSize), orZero(t.Config.RetentionAge, "-", time.Duration.String),
					orZero(t.Config.MaxRecordBytes, "node's", fmtSize))
			}
			w.Flush()
			return b.String(), nil
		})
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

func newTopicsDescribeCmd(e *env) *cobra.Command {
	var (
		cf     clientFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's settings and its partitions: leader, replicas, offsets, size",
		Long: `Show a topic's settings, then a table of its partitions: the leader's node
ID ("-" while it has none), the replicas' node IDs with "*" after those in
sync (voters of the partition's Raft group, as the answering node knows its
configuration, while the group has a leader; a replica still catching up
after a move is a learner, not in sync),
the lowest retained and next offsets and the size on disk, from the leader
where it answered. With --format json, one object:
{"topic":{...},"partitions":[{"partition":0,"leader":"n1","replicas":[{"node_id":"n1",
"rpc_addr":"...","leader":true,"in_sync":true}],"lowest_offset":0,"next_offset":0,"size_bytes":0}]}.
Fails (exit 1) if there is no such topic.` + "\n" + exitCodesHelp,
		Args: wantTopicName,
	}
	topicCmd(e, cmd, &cf, func(*cobra.Command, []string) error { return checkFormat(format) },
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			d, err := c.DescribeTopic(ctx, args[0])
			if err != nil {
				return "", err
			}
			if format == "json" {
				return marshalLine(jsonDescriptionOf(d))
			}
			return formatDescription(d), nil
		})
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

func newTopicsUpdateCmd(e *env) *cobra.Command {
	var (
		cf clientFlags
		s  topicSettings
	)
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a topic's settings (only those given) and print it as updated",
		Long: `Change the settings given on the command line; the others keep their
values. 0 turns retention by that measure off (--retention-bytes,
--retention-age) or takes the node's default (--max-record-bytes). The
partition count and replication factor cannot change.` + "\n" + exitCodesHelp,
		Args: wantTopicName,
	}
	var update client.TopicUpdate
	check := func(cmd *cobra.Command, _ []string) error {
		if err := s.check(); err != nil {
			return err
		}
		changed := cmd.Flags().Changed
		if changed("retention-bytes") {
			v := uint64(s.retentionBytes)
			update.RetentionBytes = &v
		}
		if changed("retention-age") {
			update.RetentionAge = &s.retentionAge
		}
		if changed("max-record-bytes") {
			v := uint32(s.maxRecordBytes)
			update.MaxRecordBytes = &v
		}
		if update == (client.TopicUpdate{}) {
			return usagef("%s: nothing to change: give --retention-bytes, --retention-age or --max-record-bytes", cmd.CommandPath())
		}
		return nil
	}
	topicCmd(e, cmd, &cf, check, func(ctx context.Context, c *client.Client, args []string) (string, error) {
		t, err := c.UpdateTopic(ctx, args[0], update)
		if err != nil {
			return "", err
		}
		return formatTopic(t), nil
	})
	s.register(cmd.Flags(), "off")
	return cmd
}

func newTopicsDeleteCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and every record in it, without asking",
		Long: `Delete a topic and every record in it, on every node. It asks no question:
what is deleted is gone. The topic "default" cannot be deleted. Fails
(exit 1) if there is no such topic.` + "\n" + exitCodesHelp,
		Args: wantTopicName,
	}
	return topicCmd(e, cmd, &cf, nil, func(ctx context.Context, c *client.Client, args []string) (string, error) {
		if err := c.DeleteTopic(ctx, args[0]); err != nil {
			return "", err
		}
		return fmt.Sprintf("deleted topic %s\n", args[0]), nil
	})
}

func newTopicsMoveCmd(e *env) *cobra.Command {
	var (
		cf        clientFlags
		partition int
		from, to  string
	)
	cmd := &cobra.Command{
		Use:   "move NAME --partition P --from NODE --to NODE",
		Short: "Move a partition's replica from one node to another",
		Long: `Move one replica of a partition from node --from to node --to (node IDs, as
GetServers and the dashboard list them), without losing a record: the new
replica catches up as a learner, then takes the old one's place, and the old
node removes its copy. --from may be a node that is down for good: that is
how a dead node's replicas are replaced. The command waits until the new
replica has caught up with where the others were when it started, and then
until the partition's Raft group has let the old replica go: once it
returns, the old node may be stopped. Its --timeout defaults to 10m here.
Cut short, the move stays under way and the same command resumes it.` + "\n" + exitCodesHelp,
		Args: wantTopicName,
	}
	check := func(cmd *cobra.Command, _ []string) error {
		switch {
		case from == "" || to == "":
			return usagef("%s needs --from and --to (node IDs)", cmd.CommandPath())
		case partition < 0:
			return usagef("%s: --partition %d is negative", cmd.CommandPath(), partition)
		}
		return nil
	}
	topicCmd(e, cmd, &cf, check, func(ctx context.Context, c *client.Client, args []string) (string, error) {
		replicas, err := c.MovePartition(ctx, args[0], partition, from, to)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("moved %s/%d from %s to %s: replicas %s\n", args[0], partition, from, to, strings.Join(replicas, ",")), nil
	})
	cmd.Flags().IntVar(&partition, "partition", 0, "the partition whose replica moves")
	cmd.Flags().StringVar(&from, "from", "", "the node ID that holds the replica now (required)")
	cmd.Flags().StringVar(&to, "to", "", "the node ID to move it to (required)")
	cmd.Flags().Lookup("timeout").DefValue = "10m0s"
	cf.timeout = 10 * time.Minute
	return cmd
}

func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return usagef("--format %q: want text or json", format)
	}
	return nil
}

// orZero formats v, or says what zero means.
func orZero[T comparable](v T, zeroMeans string, format func(T) string) string {
	var zero T
	if v == zero {
		return zeroMeans
	}
	return format(v)
}

func fmtSize[T uint32 | uint64](n T) string {
	return humanBytes(int64(min(uint64(n), 1<<62)))
}

func formatTopic(t *client.TopicInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "topic:              %s\n", t.Name)
	fmt.Fprintf(&b, "partitions:         %d\n", t.Partitions)
	fmt.Fprintf(&b, "replication factor: %d\n", t.ReplicationFactor)
	fmt.Fprintf(&b, "retention bytes:    %s\n", orZero(t.Config.RetentionBytes, "none (keep all)", func(n uint64) string {
		return fmt.Sprintf("%s (%d bytes)", fmtSize(n), n)
	}))
	fmt.Fprintf(&b, "retention age:      %s\n", orZero(t.Config.RetentionAge, "none (keep all)", time.Duration.String))
	fmt.Fprintf(&b, "max record bytes:   %s\n", orZero(t.Config.MaxRecordBytes, "the node's --max-record-bytes", func(n uint32) string {
		return fmt.Sprintf("%s (%d bytes)", fmtSize(n), n)
	}))
	if !t.Created.IsZero() {
		fmt.Fprintf(&b, "created:            %s\n", t.Created.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func formatDescription(d *client.TopicDescription) string {
	var b strings.Builder
	b.WriteString(formatTopic(&d.Topic))
	b.WriteByte('\n')
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tLEADER\tREPLICAS (* IN SYNC)\tLOWEST\tNEXT\tSIZE")
	for _, p := range d.Partitions {
		leader := p.Leader
		if leader == "" {
			leader = "-"
		}
		replicas := make([]string, len(p.Replicas))
		for i, r := range p.Replicas {
			replicas[i] = r.NodeID
			if r.InSync {
				replicas[i] += "*"
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%s\n", p.Partition, leader, strings.Join(replicas, ","),
			p.LowestOffset, p.NextOffset, fmtSize(p.SizeBytes))
	}
	w.Flush()
	return b.String()
}

// jsonTopic is a topic in --format json. retention_age is a Go duration
// ("168h0m0s", what --retention-age takes); 0 retention keeps everything,
// max_record_bytes 0 is the node's --max-record-bytes.
type jsonTopic struct {
	Name              string `json:"name"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	RetentionBytes    uint64 `json:"retention_bytes"`
	RetentionAge      string `json:"retention_age"`
	MaxRecordBytes    uint32 `json:"max_record_bytes"`
	Created           string `json:"created,omitempty"`
}

type jsonDescription struct {
	Topic      jsonTopic       `json:"topic"`
	Partitions []jsonPartition `json:"partitions"`
}

type jsonPartition struct {
	Partition    int           `json:"partition"`
	Leader       string        `json:"leader"`
	Replicas     []jsonReplica `json:"replicas"`
	LowestOffset uint64        `json:"lowest_offset"`
	NextOffset   uint64        `json:"next_offset"`
	SizeBytes    uint64        `json:"size_bytes"`
}

type jsonReplica struct {
	NodeID  string `json:"node_id"`
	RPCAddr string `json:"rpc_addr"`
	Leader  bool   `json:"leader"`
	InSync  bool   `json:"in_sync"`
}

func jsonTopicOf(t *client.TopicInfo) jsonTopic {
	j := jsonTopic{
		Name: t.Name, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor,
		RetentionBytes: t.Config.RetentionBytes, RetentionAge: t.Config.RetentionAge.String(),
		MaxRecordBytes: t.Config.MaxRecordBytes,
	}
	if !t.Created.IsZero() {
		j.Created = t.Created.UTC().Format(timeLayout)
	}
	return j
}

func jsonDescriptionOf(d *client.TopicDescription) jsonDescription {
	j := jsonDescription{Topic: jsonTopicOf(&d.Topic), Partitions: []jsonPartition{}}
	for _, p := range d.Partitions {
		jp := jsonPartition{Partition: p.Partition, Leader: p.Leader, Replicas: []jsonReplica{},
			LowestOffset: p.LowestOffset, NextOffset: p.NextOffset, SizeBytes: p.SizeBytes}
		for _, r := range p.Replicas {
			jp.Replicas = append(jp.Replicas, jsonReplica{NodeID: r.NodeID, RPCAddr: r.RPCAddr, Leader: r.IsLeader, InSync: r.InSync})
		}
		j.Partitions = append(j.Partitions, jp)
	}
	return j
}

func marshalLine(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b) + "\n", nil
}

// partitionFlag is --partition of produce, consume and bench: a partition
// index, set or not.
type partitionFlag struct {
	p   uint32
	set bool
}

func (f *partitionFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatUint(uint64(f.p), 10)
}
func (f *partitionFlag) Type() string { return "uint32" }
func (f *partitionFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a partition index, 0 or more")
	}
	f.p, f.set = uint32(v), true
	return nil
}

// topicFlags are --topic and --partition.
type topicFlags struct {
	topic     string
	partition partitionFlag
}

func (t *topicFlags) register(f *pflag.FlagSet, partitionHelp string) {
	f.StringVar(&t.topic, "topic", "", `topic (default "default")`)
	f.Var(&t.partition, "partition", partitionHelp)
}

// options are the client options the flags ask for.
func (t *topicFlags) options() []client.TopicOption {
	var opts []client.TopicOption
	if t.topic != "" {
		opts = append(opts, client.Topic(t.topic))
	}
	if t.partition.set {
		opts = append(opts, client.Partition(int(t.partition.p)))
	}
	return opts
}

// callOptions converts topic options for a unary call.
func callOptions(opts []client.TopicOption) []client.CallOption {
	out := make([]client.CallOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}
