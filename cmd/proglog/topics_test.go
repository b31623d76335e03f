package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/client"
)

// servedNode is `proglog serve` running in-process: a one-member cluster
// with the quickstart identity in its data dir, which the client commands
// find there (--data-dir).
type servedNode struct {
	addr, dir string
}

func startServe(t *testing.T) *servedNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &servedNode{addr: ln.Addr().String(), dir: t.TempDir()}
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() {
		e := &env{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
		done <- run(ctx, []string{"serve", "--addr", n.addr, "--data-dir", n.dir, "--node-id", "n1",
			"--sync", "never", "--log-level", "error", "--log-format", "text"}, e)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, stderr.String())
			}
		case <-time.After(time.Minute):
			t.Error("serve did not stop within a minute")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errs, code := n.cli(t.Context(), nil, "", "whoami")
		if code == 0 {
			return n
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer within 30s: %s (serve: %s)", errs, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cli runs one client command line in-process against the node; getenv
// may be nil (an empty environment).
func (n *servedNode) cli(ctx context.Context, getenv func(string) string, stdin string, args ...string) (stdout, stderr string, code int) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: getenv}
	code = run(ctx, append(args, "--addr", n.addr, "--data-dir", n.dir), e)
	return out.String(), errb.String(), code
}

// must runs a command that must succeed and returns its output.
func (n *servedNode) must(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := n.cli(t.Context(), nil, stdin, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
	}
	return out
}

func TestTopicsCommands(t *testing.T) {
	n := startServe(t)
	steps := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		contains []string // fragments stdout must hold
		wantErr  string   // a fragment of stderr's one line
	}{
		{name: "create", args: []string{"topics", "create", "orders", "--partitions", "3", "--retention-age", "168h"},
			contains: []string{"topic:              orders\n", "partitions:         3\n", "replication factor: 1\n", "retention age:      168h0m0s\n", "created:  "}},
		{name: "create taken", args: []string{"topics", "create", "orders"}, wantCode: exitError, wantErr: "already_exists"},
		{name: "create bad name", args: []string{"topics", "create", "a/b"}, wantCode: exitError, wantErr: "invalid_argument"},
		{name: "create no name", args: []string{"topics", "create"}, wantCode: exitUsage, wantErr: "one argument"},
		{name: "create negative", args: []string{"topics", "create", "x", "--partitions", "-1"}, wantCode: exitUsage, wantErr: "--partitions"},
		{name: "create too many replicas", args: []string{"topics", "create", "x", "--replication-factor", "3"}, wantCode: exitError, wantErr: "failed_precondition"},
		{name: "create small records", args: []string{"topics", "create", "small", "--max-record-bytes", "1KiB", "--retention-bytes", "1MiB"},
			contains: []string{"max record bytes:   1.0 KiB (1024 bytes)\n", "retention bytes:    1.0 MiB (1048576 bytes)\n", "partitions:         1\n"}},
		{name: "list", args: []string{"topics", "list"}, contains: []string{"NAME", "\ndefault ", "\norders ", "\nsmall "}},
		{name: "describe", args: []string{"topics", "describe", "orders"},
			contains: []string{"PARTITION  LEADER", "\n0          n1      n1*", "\n1 ", "\n2 "}},
		{name: "describe missing", args: []string{"topics", "describe", "nope"}, wantCode: exitError, wantErr: "not_found"},
		{name: "describe bad format", args: []string{"topics", "describe", "orders", "--format", "hex"}, wantCode: exitUsage, wantErr: "--format"},
		{name: "update", args: []string{"topics", "update", "orders", "--retention-bytes", "1MiB"},
			contains: []string{"retention bytes:    1.0 MiB (1048576 bytes)\n", "retention age:      168h0m0s\n"}},
		{name: "update retention off", args: []string{"topics", "update", "orders", "--retention-age", "0s"},
			contains: []string{"retention bytes:    1.0 MiB", "retention age:      none"}},
		// serve's settings in the environment are not a topic's.
		{name: "update from the environment", args: []string{"topics", "update", "orders"},
			env: map[string]string{"PROGLOG_RETENTION_BYTES": "5GiB", "PROGLOG_MAX_RECORD_BYTES": "2MiB"}, wantCode: exitUsage, wantErr: "nothing to change"},
		{name: "update missing", args: []string{"topics", "update", "nope", "--retention-bytes", "1"}, wantCode: exitError, wantErr: "not_found"},
		{name: "delete", args: []string{"topics", "delete", "small"}, contains: []string{"deleted topic small\n"}},
		{name: "delete again", args: []string{"topics", "delete", "small"}, wantCode: exitError, wantErr: "not_found"},
		{name: "delete default", args: []string{"topics", "delete", "default"}, wantCode: exitError, wantErr: "failed_precondition"},
		// One node: no other node to move a replica to (moves between
		// nodes are tested in node/).
		{name: "move without nodes", args: []string{"topics", "move", "orders", "--from", "n1"}, wantCode: exitUsage, wantErr: "--from and --to"},
		{name: "move to a stranger", args: []string{"topics", "move", "orders", "--from", "n1", "--to", "n9"}, wantCode: exitError, wantErr: "not a member"},
		{name: "move a replica it lacks", args: []string{"topics", "move", "orders", "--from", "n7", "--to", "n1"}, wantCode: exitError, wantErr: "holds no replica"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			getenv := func(k string) string { return s.env[k] }
			out, errs, code := n.cli(t.Context(), getenv, "", s.args...)
			if code != s.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, s.wantCode, out, errs)
			}
			for _, c := range s.contains {
				if !strings.Contains(out, c) {
					t.Fatalf("stdout lacks %q:\n%s", c, out)
				}
			}
			if s.wantErr != "" && (!strings.Contains(errs, s.wantErr) || strings.Count(errs, "\n") != 1) {
				t.Fatalf("stderr %q, want one line with %q", errs, s.wantErr)
			}
		})
	}

	var errb syncBuffer
	if code := run(t.Context(), []string{"topics"}, &env{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: &errb,
		getenv: func(string) string { return "" }}); code != exitUsage || !strings.Contains(errb.String(), "needs a subcommand") {
		t.Fatalf("topics alone: exit %d, %q", code, errb.String())
	}

	var list []jsonTopic
	if err := json.Unmarshal([]byte(n.must(t, "", "topics", "list", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tp := range list {
		names = append(names, tp.Name)
	}
	if !slices.Contains(names, "orders") || !slices.Contains(names, "default") || slices.Contains(names, "small") {
		t.Fatalf("topics list --format json names %v", names)
	}
	var d jsonDescription
	if err := json.Unmarshal([]byte(n.must(t, "", "topics", "describe", "orders", "--format", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Topic.Name != "orders" || d.Topic.Partitions != 3 || d.Topic.RetentionBytes != 1<<20 || d.Topic.RetentionAge != "0s" || len(d.Partitions) != 3 {
		t.Fatalf("describe --format json: %+v", d)
	}
	for i, p := range d.Partitions {
		if p.Partition != i || p.Leader != "n1" || len(p.Replicas) != 1 || !p.Replicas[0].Leader || !p.Replicas[0].InSync || p.Replicas[0].RPCAddr == "" {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
}

func TestProduceConsumeTopic(t *testing.T) {
	n := startServe(t)
	const parts = 3
	n.must(t, "", "topics", "create", "t", "--partitions", strconv.Itoa(parts))

	if out := n.must(t, "", "produce", "--topic", "t", "--partition", "2", "a", "b"); out != "0\n1\n" {
		t.Fatalf("produce to partition 2 printed %q", out)
	}
	if out := n.must(t, "", "consume", "--topic", "t", "--partition", "2"); out != "a\nb\n" {
		t.Fatalf("consume partition 2 printed %q", out)
	}
	if out := n.must(t, "", "consume", "--topic", "t"); out != "" {
		t.Fatalf("consume partition 0 printed %q, want nothing", out)
	}
	if out := n.must(t, "", "consume"); out != "" {
		t.Fatalf("the default topic holds %q, want nothing", out)
	}

	// Keyed lines go where their keys map to; each line says where.
	var stdin strings.Builder
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("user-%d", i)
		keys = append(keys, k)
		fmt.Fprintf(&stdin, "%s:v%d\n", k, i)
	}
	out := n.must(t, stdin.String(), "produce", "--topic", "t", "--key-separator", ":", "--batch", "7")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(keys) {
		t.Fatalf("produce printed %d lines for %d records:\n%s", len(lines), len(keys), out)
	}
	want := make([][]string, parts) // values per partition, in order
	want[2] = []string{"a", "b"}
	for i, line := range lines {
		p, _, ok := strings.Cut(line, "\t")
		if !ok || p != strconv.Itoa(catalog.PartitionForKey([]byte(keys[i]), parts)) {
			t.Fatalf("line %d %q: want the partition of key %s, %d", i, line, keys[i], catalog.PartitionForKey([]byte(keys[i]), parts))
		}
		pi, _ := strconv.Atoi(p)
		want[pi] = append(want[pi], fmt.Sprintf("v%d", i))
	}
	for p := range parts {
		out := n.must(t, "", "consume", "--topic", "t", "--partition", strconv.Itoa(p), "--format", "json")
		var got []string
		for line := range strings.Lines(out) {
			var r jsonRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.KeyText != nil && catalog.PartitionForKey([]byte(*r.KeyText), parts) != p {
				t.Fatalf("partition %d holds key %s", p, *r.KeyText)
			}
			v, _ := base64.StdEncoding.DecodeString(r.Value)
			got = append(got, string(v))
		}
		if !slices.Equal(got, want[p]) {
			t.Fatalf("partition %d holds %q, want %q", p, got, want[p])
		}
	}

	// Keyless records on a topic of several partitions: the server picks.
	out = n.must(t, "", "produce", "--topic", "t", "x")
	if p, _, ok := strings.Cut(out, "\t"); !ok || p < "0" || p > "2" {
		t.Fatalf("produce of a keyless record printed %q", out)
	}
	if _, errs, code := n.cli(t.Context(), nil, "", "produce", "--topic", "nope", "x"); code != exitError || !strings.Contains(errs, "not_found") {
		t.Fatalf("produce to a missing topic: exit %d, %q", code, errs)
	}
	if _, errs, code := n.cli(t.Context(), nil, "", "consume", "--partition", "-1"); code != exitUsage {
		t.Fatalf("consume --partition -1: exit %d, %q", code, errs)
	}
}

func TestBenchTopics(t *testing.T) {
	n := startServe(t)
	out := n.must(t, "", "bench", "produce", "--topics", "2", "--partitions", "3", "--records", "600", "--batch", "20", "--key-size", "8", "--clients", "2")
	if !strings.Contains(out, "topics bench-0..bench-1 (3 partitions each, 2 created)") || !strings.Contains(out, "\n  600 records, ") {
		t.Fatalf("bench produce printed:\n%s", out)
	}
	out = n.must(t, "", "bench", "produce", "--topics", "2", "--partitions", "3", "--records", "200", "--mode", "batch", "--batch", "20", "--key-size", "8")
	if !strings.Contains(out, "(3 partitions each, 0 created)") || !strings.Contains(out, "\n  200 records, ") {
		t.Fatalf("bench produce again printed:\n%s", out)
	}
	n.must(t, "", "bench", "produce", "--topics", "2", "--records", "20", "--mode", "unary")

	total := uint64(0)
	for _, topic := range []string{"bench-0", "bench-1"} {
		var d jsonDescription
		if err := json.Unmarshal([]byte(n.must(t, "", "topics", "describe", topic, "--format", "json")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Topic.Partitions != 3 {
			t.Fatalf("%s has %d partitions", topic, d.Topic.Partitions)
		}
		for _, p := range d.Partitions {
			if p.NextOffset == 0 {
				t.Fatalf("%s partition %d is empty: the load was not spread", topic, p.Partition)
			}
			total += p.NextOffset
		}
	}
	if total != 820 {
		t.Fatalf("the bench topics hold %d records, want 820", total)
	}
	out = n.must(t, "", "bench", "consume", "--topic", "bench-1", "--partition", "2", "--records", "10", "--batch", "3")
	if !strings.Contains(out, "topic bench-1 partition 2") || !strings.Contains(out, "\n  10 records, ") {
		t.Fatalf("bench consume printed:\n%s", out)
	}
	for _, args := range [][]string{
		{"bench", "produce", "--topics", "2", "--topic", "x"},
		{"bench", "produce", "--partitions", "2"},
		{"bench", "produce", "--topics", "1", "--partitions", "0"},
	} {
		if _, errs, code := n.cli(t.Context(), nil, "", args...); code != exitUsage {
			t.Fatalf("%v: exit %d, %q; want %d", args, code, errs, exitUsage)
		}
	}
}

func TestFormatDescription(t *testing.T) {
	d := &client.TopicDescription{
		Topic: client.TopicInfo{Name: "orders", Partitions: 2, ReplicationFactor: 3,
			Config: client.TopicConfig{RetentionBytes: 10 << 30}, Created: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)},
		Partitions: []client.PartitionState{
			{Partition: 0, Leader: "n1", NextOffset: 120, SizeBytes: 12 << 10, Replicas: []client.Replica{
				{NodeID: "n1", IsLeader: true, InSync: true}, {NodeID: "n2", InSync: true}, {NodeID: "n3"}}},
			{Partition: 1, LowestOffset: 5, NextOffset: 9, Replicas: []client.Replica{{NodeID: "n2"}, {NodeID: "n3"}, {NodeID: "n1"}}},
		},
	}
	want := `topic:              orders
partitions:         2
replication factor: 3
retention bytes:    10.0 GiB (10737418240 bytes)
retention age:      none (keep all)
max record bytes:   the node's --max-record-bytes
created:            2026-11-30T10:00:00Z

PARTITION  LEADER  REPLICAS (* IN SYNC)  LOWEST  NEXT  SIZE
0          n1      n1*,n2*,n3            0       120   12.0 KiB
1          -       n2,n3,n1              5       9     0 B
`
	if got := formatDescription(d); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}
