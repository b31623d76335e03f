package client_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/client"
	"github.com/proglog/proglog/cluster/clustertest"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	proglognode "github.com/proglog/proglog/node"
)

// clusterNode is a node of startThreeNodes: proglog serve's assembly, with
// its own metrics registry.
type clusterNode struct {
	id, addr string
	reg      *prometheus.Registry
	stop     func()
}

// metric calls each sample of the node's metric name with its labels and
// value (a counter's or a gauge's).
func (n *clusterNode) metric(t *testing.T, name string, each func(labels map[string]string, value float64)) {
	t.Helper()
	families, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			each(labels, m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
	}
}

// appends counts the Produce and ProduceBatch requests the node handled
// (those it forwarded and those forwarded to it included).
func (n *clusterNode) appends(t *testing.T) int {
	t.Helper()
	total := 0.0
	n.metric(t, "proglog_rpc_requests_total", func(labels map[string]string, v float64) {
		if p := labels["procedure"]; p == "/log.v1.LogService/Produce" || p == "/log.v1.LogService/ProduceBatch" {
			total += v
		}
	})
	return int(total)
}

// voters is how many voters the node knows partition of topic's Raft group
// to have (proglog_partition_voters), or -1 if it does not host it.
func (n *clusterNode) voters(t *testing.T, topic string, partition int) int {
	t.Helper()
	out := -1
	n.metric(t, "proglog_partition_voters", func(labels map[string]string, v float64) {
		if labels["topic"] == topic && labels["partition"] == strconv.Itoa(partition) {
			out = int(v)
		}
	})
	return out
}

// startThreeNodes starts a three-node cluster through gossip, as proglog
// serve runs it (package node: topics, partitions' Raft groups), once
// every node is a voter.
func (p *testCA) startThreeNodes(t *testing.T) []*clusterNode {
	t.Helper()
	acl := filepath.Join(t.TempDir(), "acl.csv")
	if err := os.WriteFile(acl, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*clusterNode
	seed := ""
	for i := range 3 {
		id := fmt.Sprint("n", i+1)
		cert, key := p.Issue(t, id, true)
		reg := prometheus.NewRegistry()
		cfg := proglognode.Config{
			DataDir: t.TempDir(), Addr: "127.0.0.1:0", NodeID: id, Version: "test",
			TLSCert: cert, TLSKey: key, TLSCA: p.CAFile, ACL: acl,
			Store:      logstore.Config{Sync: logstore.SyncNever},
			Logger:     clustertest.Logger(t).With("node", id),
			Registerer: reg, Gatherer: reg,
		}
		cfg.Cluster.GossipKey = []byte("0123456789abcdef0123456789abcdef")
		cfg.Cluster.GossipAddr = freeGossipAddr(t)
		cfg.Cluster.RaftTimeout = 500 * time.Millisecond
		if i == 0 {
			cfg.Cluster.Bootstrap = true
			seed = cfg.Cluster.GossipAddr
		} else {
			cfg.Cluster.Join = []string{seed}
		}
		n, err := proglognode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s: Run: %v", id, err)
					}
				case <-time.After(time.Minute):
					t.Errorf("%s did not stop within a minute", id)
				}
			})
		}
		t.Cleanup(stop)
		eventually(t, id+" to gossip", func() bool {
			conn, err := net.Dial("tcp", cfg.Cluster.GossipAddr)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
		nodes = append(nodes, &clusterNode{id: id, addr: n.Addr(), reg: reg, stop: stop})
	}
	c := p.newClient(t, "root", client.Config{Addrs: []string{nodes[0].addr}})
	eventually(t, "three voters", func() bool {
		servers, err := c.Servers(t.Context())
		return err == nil && len(servers) == 3
	})
	return nodes
}

// freeGossipAddr is a loopback address whose port is free for TCP and UDP.
func freeGossipAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		ln := clustertest.Listen(t, "")
		addr := ln.Addr().String()
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port for gossip")
	return ""
}

// eventually polls cond for up to 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leadersOf returns, per partition of topic, the ID of the node that holds
// its one replica.
func leadersOf(t *testing.T, c *client.Client, topic string) []string {
	t.Helper()
	d, err := c.DescribeTopic(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, d.Topic.Partitions)
	for _, p := range d.Partitions {
		if len(p.Replicas) != 1 {
			t.Fatalf("partition %d has replicas %+v, want one", p.Partition, p.Replicas)
		}
		out[p.Partition] = p.Replicas[0].NodeID
	}
	return out
}

// appendCounts is each node's appends count, by node ID.
func appendCounts(t *testing.T, nodes []*clusterNode) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range nodes {
		out[n.id] = n.appends(t)
	}
	return out
}

// direct runs send, which makes one append request to each partition in
// want (partition -> the node ID expected to lead it), and reports whether
// each went straight to that node: every node saw as many appends as the
// partitions it leads among them, and no more (a forwarded append counts
// on two nodes).
func direct(t *testing.T, nodes []*clusterNode, want map[int]string, send func(partition int) error) (bool, string) {
	t.Helper()
	before := appendCounts(t, nodes)
	expect := map[string]int{}
	for p, id := range want {
		if err := send(p); err != nil {
			t.Fatalf("append to partition %d: %v", p, err)
		}
		expect[id]++
	}
	after := appendCounts(t, nodes)
	ok := true
	var got []string
	for _, n := range nodes {
		d := after[n.id] - before[n.id]
		got = append(got, fmt.Sprintf("%s: %d (want %d)", n.id, d, expect[n.id]))
		if d != expect[n.id] {
			ok = false
		}
	}
	return ok, strings.Join(got, ", ")
}

// TestAppendsGoToThePartitionLeader runs a topic of six partitions at
// replication factor 1 on three nodes, so each partition lives on one
// node: the client's appends that name or map to a partition reach that
// node and no other, and after a partition moves to another node the
// client follows it: on its next refresh, or at once when the old node is
// gone.
func TestAppendsGoToThePartitionLeader(t *testing.T) {
	p := newTestCA(t)
	nodes := p.startThreeNodes(t)
	byID := map[string]*clusterNode{}
	var all []string
	for _, n := range nodes {
		byID[n.id] = n
		all = append(all, n.addr)
	}
	const topic, partitions = "routed", 6
	c := p.newClient(t, "root", client.Config{Addrs: all, RefreshInterval: 300 * time.Millisecond})
	ctx := t.Context()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	leaders := leadersOf(t, c, topic)
	want := map[int]string{}
	for p, id := range leaders {
		want[p] = id
	}
	produce := func(c *client.Client) func(int) error {
		return func(p int) error {
			_, err := c.Produce(ctx, []byte("v"), client.Topic(topic), client.Partition(p))
			return err
		}
	}
	// The partitions elect their leaders after the topic is created; once
	// the client has seen them, every append goes straight to its leader.
	var how string
	eventually(t, "produces to go to the partitions' leaders", func() bool {
		ok, h := direct(t, nodes, want, produce(c))
		how = h
		return ok
	})
	t.Logf("direct produces: %s", how)

	// ProduceBatch and ProduceRecords naming a partition, and ProduceSplit
	// and ProduceRecords of keys that map to one, go straight there too.
	keyFor := map[int][]byte{}
	for i := 0; len(keyFor) < partitions; i++ {
		k := fmt.Appendf(nil, "key-%d", i)
		if p := catalog.PartitionForKey(k, partitions); keyFor[p] == nil {
			keyFor[p] = k
		}
	}
	for name, send := range map[string]func(int) error{
		"ProduceBatch": func(p int) error {
			_, err := c.ProduceBatch(ctx, [][]byte{[]byte("a"), []byte("b")}, client.Topic(topic), client.Partition(p))
			return err
		},
		"ProduceRecords keyed": func(p int) error {
			_, err := c.ProduceRecords(ctx, []*logv1.Record{{Key: keyFor[p], Value: []byte("a")}}, client.Topic(topic))
			return err
		},
		"ProduceSplit": func(p int) error {
			res, err := c.ProduceSplit(ctx, []*logv1.Record{{Key: keyFor[p], Value: []byte("a")}, {Key: keyFor[p], Value: []byte("b")}}, client.Topic(topic))
			if err == nil && (res[0].Partition != p || res[1].Partition != p) {
				return fmt.Errorf("went to %+v", res)
			}
			return err
		},
	} {
		if ok, how := direct(t, nodes, want, send); !ok {
			t.Errorf("%s: not straight to the leaders: %s", name, how)
		}
	}

	// A Producer of one partition streams straight to its leader: nothing
	// is forwarded (a stream's request forwarded to the leader reaches it
	// as a ProduceBatch).
	before := appendCounts(t, nodes)
	for p := range partitions {
		pr, err := c.NewProducer(ctx, 8, client.Topic(topic), client.Partition(p))
		if err != nil {
			t.Fatal(err)
		}
		ack, err := pr.Send(ctx, []byte("s1"), []byte("s2"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ack.Wait(ctx); err != nil {
			t.Fatalf("producer of partition %d: %v", p, err)
		}
		if err := pr.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := appendCounts(t, nodes)
	for _, n := range nodes {
		if after[n.id] != before[n.id] {
			t.Errorf("%s handled %d unary appends while producers streamed to the partitions: a stream went through another node", n.id, after[n.id]-before[n.id])
		}
	}

	// A client that refreshes rarely sends straight to the leaders too.
	slow := p.newClient(t, "root", client.Config{Addrs: all, RefreshInterval: time.Hour})
	if ok, how := direct(t, nodes, want, produce(slow)); !ok {
		t.Fatalf("a fresh client's produces: %s", how)
	}

	// Move a partition from a node that does not lead the cluster to the
	// other such node, so that an append the cluster's leader forwards
	// counts on two nodes.
	servers, err := c.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	systemLeader := ""
	for _, s := range servers {
		if s.GetIsLeader() {
			systemLeader = s.GetId()
		}
	}
	moved := -1
	for p, id := range leaders {
		if id != systemLeader {
			moved = p
			break
		}
	}
	if moved < 0 {
		t.Skip("the cluster's leader holds every partition")
	}
	from, to := leaders[moved], ""
	for _, n := range nodes {
		if n.id != from && n.id != systemLeader {
			to = n.id
		}
	}
	if _, err := c.MovePartition(ctx, topic, moved, from, to); err != nil {
		t.Fatalf("MovePartition %d %s -> %s: %v", moved, from, to, err)
	}
	// MovePartition returns once the old replica has left the partition's
	// Raft group: stopping its node (below) cannot take the one-replica
	// group's quorum with it.
	if n := byID[to].voters(t, topic, moved); n != 1 {
		t.Fatalf("when MovePartition returned, %s knew %d voters of partition %d, want 1 (%s gone)", to, n, moved, from)
	}
	only := map[int]string{moved: to}
	// The client that refreshes often follows on its own.
	eventually(t, "produces to follow the move", func() bool {
		ok, h := direct(t, nodes, only, produce(c))
		how = h
		return ok
	})
	t.Logf("after the move: %s", how)

	// The one that does not still sends to the old node, which forwards;
	// once that node is gone, its first failed attempt sends it to the
	// partition's new leader.
	if ok, how := direct(t, nodes, only, produce(slow)); ok {
		t.Logf("the rarely refreshing client already follows the move: %s", how)
	}
	byID[from].stop()
	var rest []*clusterNode
	for _, n := range nodes {
		if n.id != from {
			rest = append(rest, n)
		}
	}
	for range 3 {
		if ok, how := direct(t, rest, only, produce(slow)); !ok {
			t.Fatalf("after %s stopped, produces not straight to %s: %s", from, to, how)
		}
	}
}
