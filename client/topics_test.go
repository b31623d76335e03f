package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/client"
	"github.com/proglog/proglog/cluster/clustertest"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	proglognode "github.com/proglog/proglog/node"
)

// startTopicNode runs a one-member cluster as proglog serve assembles it
// (package node: the catalogue and the partitions' Raft groups, which
// serve topics) until the test ends, and returns its address.
func (p *testCA) startTopicNode(t *testing.T) string {
	t.Helper()
	cert, key := p.Issue(t, "n1", true)
	acl := filepath.Join(t.TempDir(), "acl.csv")
	if err := os.WriteFile(acl, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := proglognode.New(proglognode.Config{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", NodeID: "n1", Version: "test",
		TLSCert: cert, TLSKey: key, TLSCA: p.CAFile, ACL: acl,
		Store:  logstore.Config{Sync: logstore.SyncNever},
		Logger: clustertest.Logger(t).With("node", "n1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the node did not stop within a minute")
		}
	})
	return n.Addr()
}

// topicClient starts a node and returns a root client of it.
func topicClient(t *testing.T) (*testCA, string, *client.Client) {
	t.Helper()
	p := newTestCA(t)
	addr := p.startTopicNode(t)
	return p, addr, p.newClient(t, "root", client.Config{Addrs: []string{addr}})
}

func createTopic(t *testing.T, c *client.Client, name string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tp, err := c.CreateTopic(ctx, client.TopicSpec{Name: name, Partitions: partitions})
	if err != nil {
		t.Fatalf("CreateTopic %s: %v", name, err)
	}
	if tp.Name != name || tp.Partitions != partitions || tp.ReplicationFactor != 1 {
		t.Fatalf("created %+v, want %s of %d partitions, replication factor 1", tp, name, partitions)
	}
}

// readPartition reads every record of a partition.
func readPartition(t *testing.T, c *client.Client, topic string, partition int) []*logv1.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	where := []client.CallOption{client.Topic(topic), client.Partition(partition)}
	st, err := c.Stats(ctx, where...)
	if err != nil {
		t.Fatalf("Stats %s/%d: %v", topic, partition, err)
	}
	var out []*logv1.Record
	if st.GetNextOffset() == st.GetLowestOffset() {
		return nil
	}
	err = c.Tail(ctx, st.GetLowestOffset(), func(r *logv1.Record) error {
		out = append(out, r)
		return nil
	}, client.Topic(topic), client.Partition(partition), client.Until(st.GetNextOffset()))
	if err != nil {
		t.Fatalf("Tail %s/%d: %v", topic, partition, err)
	}
	return out
}

func keyedRecords(prefix string, n int) []*logv1.Record {
	records := make([]*logv1.Record, n)
	for i := range records {
		records[i] = &logv1.Record{Key: fmt.Appendf(nil, "%s-key-%d", prefix, i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	return records
}

func TestTopicAdmin(t *testing.T) {
	_, _, c := topicClient(t)
	ctx := t.Context()

	createTopic(t, c, "orders", 3)
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "orders"}); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("creating it again: %v, want AlreadyExists", err)
	}
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "bad/name"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a bad name: %v, want InvalidArgument", err)
	}
	week := 7 * 24 * time.Hour
	tp, err := c.CreateTopic(ctx, client.TopicSpec{Name: "events", Config: client.TopicConfig{RetentionAge: week, MaxRecordBytes: 512}})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Partitions != 1 || tp.Config.RetentionAge != week || tp.Config.MaxRecordBytes != 512 || tp.Created.IsZero() {
		t.Fatalf("created %+v", tp)
	}

	topics, err := c.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tp := range topics {
		names = append(names, tp.Name)
	}
	for _, want := range []string{"default", "events", "orders"} {
		if !slices.Contains(names, want) {
			t.Fatalf("ListTopics = %v, want %s among them", names, want)
		}
	}

	d, err := c.DescribeTopic(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if d.Topic.Name != "orders" || d.Topic.Partitions != 3 || len(d.Partitions) != 3 {
		t.Fatalf("DescribeTopic = %+v", d)
	}
	for i, ps := range d.Partitions {
		if ps.Partition != i || len(ps.Replicas) != 1 || ps.Replicas[0].NodeID != "n1" {
			t.Fatalf("partition %d: %+v", i, ps)
		}
	}
	if d, err := c.DescribeTopic(ctx, ""); err != nil || d.Topic.Name != "default" {
		t.Fatalf(`DescribeTopic("") = %+v, %v; want the default topic`, d, err)
	}

	bytes := uint64(1 << 20)
	tp, err = c.UpdateTopic(ctx, "events", client.TopicUpdate{RetentionBytes: &bytes})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Config.RetentionBytes != bytes || tp.Config.RetentionAge != week || tp.Config.MaxRecordBytes != 512 {
		t.Fatalf("updated %+v: want retention bytes set and the rest kept", tp.Config)
	}
	off := time.Duration(0)
	if tp, err = c.UpdateTopic(ctx, "events", client.TopicUpdate{RetentionAge: &off}); err != nil || tp.Config.RetentionAge != 0 || tp.Config.RetentionBytes != bytes {
		t.Fatalf("turning retention by age off: %+v, %v", tp, err)
	}

	if err := c.DeleteTopic(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeTopic(ctx, "events"); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("describing a deleted topic: %v, want NotFound", err)
	}
	if err := c.DeleteTopic(ctx, "events"); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("deleting it again: %v, want NotFound", err)
	}
	if err := c.DeleteTopic(ctx, "default"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("deleting the default topic: %v, want FailedPrecondition", err)
	}
}

func TestProduceConsumeNamedPartition(t *testing.T) {
	_, _, c := topicClient(t)
	ctx := t.Context()
	createTopic(t, c, "t", 3)
	in := func(p int) []client.CallOption { return []client.CallOption{client.Topic("t"), client.Partition(p)} }

	for i := range 3 {
		off, err := c.Produce(ctx, fmt.Appendf(nil, "p2-%d", i), in(2)...)
		if err != nil || off != uint64(i) {
			t.Fatalf("Produce %d to partition 2 = %d, %v", i, off, err)
		}
	}
	base, err := c.ProduceBatch(ctx, [][]byte{[]byte("p1-0"), []byte("p1-1")}, in(1)...)
	if err != nil || base != 0 {
		t.Fatalf("ProduceBatch to partition 1 = %d, %v", base, err)
	}
	// Keyed records with the partition named go there, whatever their keys.
	res, err := c.ProduceSplit(ctx, keyedRecords("named", 10), in(0)...)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range res {
		if a.Partition != 0 || a.Offset != uint64(i) || a.Err != nil {
			t.Fatalf("record %d: %+v, want partition 0 offset %d", i, a, i)
		}
	}

	rec, err := c.Consume(ctx, 1, in(2)...)
	if err != nil || string(rec.GetValue()) != "p2-1" || rec.GetOffset() != 1 {
		t.Fatalf("Consume(1) of partition 2 = %v, %v", rec, err)
	}
	if rec, err := c.Consume(ctx, 2, in(1)...); connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("Consume(2) of partition 1 = %v, %v; want OutOfRange", rec, err)
	}
	if rec, err := c.ConsumeTime(ctx, time.Now().Add(-time.Hour), in(1)...); err != nil || string(rec.GetValue()) != "p1-0" {
		t.Fatalf("ConsumeTime of partition 1 = %v, %v", rec, err)
	}
	// The default topic has none of it.
	if st, err := c.Stats(ctx); err != nil || st.GetNextOffset() != 0 {
		t.Fatalf("default topic stats %v, %v; want it empty", st, err)
	}
	for p, want := range map[int][]string{1: {"p1-0", "p1-1"}, 2: {"p2-0", "p2-1", "p2-2"}} {
		var got []string
		for _, r := range readPartition(t, c, "t", p) {
			got = append(got, string(r.GetValue()))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("partition %d holds %q, want %q", p, got, want)
		}
	}
	if _, err := c.Produce(ctx, []byte("x"), in(7)...); err == nil || errors.Is(err, client.ErrUnknownOutcome) ||
		(connect.CodeOf(err) != connect.CodeNotFound && connect.CodeOf(err) != connect.CodeInvalidArgument) {
		t.Fatalf("Produce to partition 7 of 3: %v, want NotFound or InvalidArgument", err)
	}
	if _, err := c.Produce(ctx, []byte("x"), client.Topic("nope")); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("Produce to a topic that does not exist: %v, want NotFound", err)
	}
}

// checkPlaced checks that every record of the topic's partitions is on the
// partition its key maps to, in the order produced when ordered, and that
// they are all there.
func checkPlaced(t *testing.T, c *client.Client, topic string, n int, produced []*logv1.Record, ordered bool) {
	t.Helper()
	want := make([][]string, n)
	for _, r := range produced {
		if len(r.GetKey()) > 0 {
			p := catalog.PartitionForKey(r.GetKey(), n)
			want[p] = append(want[p], string(r.GetValue()))
		}
	}
	total := 0
	for p := range n {
		var got []string
		for _, r := range readPartition(t, c, topic, p) {
			if len(r.GetKey()) == 0 {
				total++
				continue // placed by the server
			}
			got = append(got, string(r.GetValue()))
		}
		if !ordered {
			slices.Sort(got)
			slices.Sort(want[p])
		}
		if !slices.Equal(got, want[p]) {
			t.Fatalf("partition %d holds keyed records %q, want %q", p, got, want[p])
		}
		total += len(got)
	}
	if total != len(produced) {
		t.Fatalf("the partitions hold %d records, %d were produced", total, len(produced))
	}
}

func TestProduceSplitByKey(t *testing.T) {
	_, _, c := topicClient(t)
	ctx := t.Context()
	const n = 4
	createTopic(t, c, "keyed", n)

	records := keyedRecords("a", 40)
	records = slices.Insert(records, 5, &logv1.Record{Value: []byte("keyless-0")}, &logv1.Record{Value: []byte("keyless-1")})
	// One request for keys of several partitions is refused by the server.
	if _, err := c.ProduceRecords(ctx, records, client.Topic("keyed")); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("ProduceRecords of keys of several partitions: %v, want InvalidArgument", err)
	}
	res, err := c.ProduceSplit(ctx, records, client.Topic("keyed"))
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]uint64{} // the offset of the last keyed record of each partition
	for i, a := range res {
		k := records[i].GetKey()
		if len(k) == 0 {
			continue // the server places them, in a request of their own
		}
		if a.Partition != catalog.PartitionForKey(k, n) {
			t.Fatalf("record %d (key %q) went to partition %d, its key maps to %d", i, k, a.Partition, catalog.PartitionForKey(k, n))
		}
		// One request per partition: its records are consecutive, in order.
		if prev, ok := last[a.Partition]; ok && a.Offset != prev+1 {
			t.Fatalf("record %d at offset %d of partition %d, after %d", i, a.Offset, a.Partition, prev)
		}
		last[a.Partition] = a.Offset
	}
	// A batch whose keys map to one partition is one request, to it.
	same := []*logv1.Record{{Key: []byte("k"), Value: []byte("k-0")}, {Key: []byte("k"), Value: []byte("k-1")}}
	if res, err := c.ProduceSplit(ctx, same, client.Topic("keyed")); err != nil || res[0].Partition != catalog.PartitionForKey([]byte("k"), n) || res[1].Offset != res[0].Offset+1 {
		t.Fatalf("ProduceSplit of one key = %+v, %v", res, err)
	}
	checkPlaced(t, c, "keyed", n, append(records, same...), true)
}

func TestProducerSplitsByPartition(t *testing.T) {
	_, _, c := topicClient(t)
	ctx := t.Context()
	const n = 3
	createTopic(t, c, "stream", n)
	p, err := c.NewProducer(ctx, 8, client.Topic("stream"), client.Ordered())
	if err != nil {
		t.Fatal(err)
	}
	var produced []*logv1.Record
	var acks []*client.Ack
	for i := range 10 {
		records := keyedRecords(fmt.Sprint("s", i), 7)
		produced = append(produced, records...)
		ack, err := p.SendRecords(ctx, records...)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	keyless, err := p.Send(ctx, []byte("v0"), []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	produced = append(produced, &logv1.Record{Value: []byte("v0")}, &logv1.Record{Value: []byte("v1")})
	for i, ack := range acks {
		if _, err := ack.Wait(ctx); err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		for j, a := range ack.Appended() {
			if k := produced[i*7+j].GetKey(); a.Err != nil || a.Partition != catalog.PartitionForKey(k, n) {
				t.Fatalf("send %d record %d: %+v, want partition %d", i, j, a, catalog.PartitionForKey(k, n))
			}
		}
	}
	base, err := keyless.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := keyless.Appended(); a[0].Offset != base || a[1].Offset != base+1 || a[0].Partition != a[1].Partition {
		t.Fatalf("keyless send: %+v, base %d: want one request", a, base)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlaced(t, c, "stream", n, produced, true)

	// A Producer with the partition named sends every record there.
	p, err = c.NewProducer(ctx, 0, client.Topic("stream"), client.Partition(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	ack, err := p.SendRecords(ctx, keyedRecords("named", 5)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ack.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range ack.Appended() {
		if a.Partition != 1 {
			t.Fatalf("a record of a Producer of partition 1 went to %d", a.Partition)
		}
	}
}

// A client whose partition count is stale (the topic was deleted and
// created again with fewer partitions by someone else) learns the new
// count when the server refuses a partition that no longer exists.
func TestStalePartitionCountIsRefreshed(t *testing.T) {
	p, addr, c := topicClient(t)
	ctx := t.Context()
	admin := p.newClient(t, "root", client.Config{Addrs: []string{addr}})
	createTopic(t, admin, "shrinks", 4)
	if _, err := c.ProduceSplit(ctx, keyedRecords("before", 20), client.Topic("shrinks")); err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteTopic(ctx, "shrinks"); err != nil {
		t.Fatal(err)
	}
	createTopic(t, admin, "shrinks", 2)

	records := keyedRecords("after", 20)
	res, err := c.ProduceSplit(ctx, records, client.Topic("shrinks"))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range res {
		if want := catalog.PartitionForKey(records[i].GetKey(), 2); a.Partition != want {
			t.Fatalf("record %d went to partition %d, want %d of 2", i, a.Partition, want)
		}
	}
	// The records sent again after the refusal follow those that went to
	// the right partition at once.
	checkPlaced(t, c, "shrinks", 2, records, false)
}
