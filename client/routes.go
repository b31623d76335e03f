package client

import (
	"context"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"

	"github.com/proglog/proglog/catalog"
)

// partitionRoute is where a partition lives, as learned from DescribeTopic.
type partitionRoute struct {
	leader   string   // the leader's RPC address; "" when no answer knew it
	replicas []string // the replicas' RPC addresses
}

// describeRoutes learns topic name's partition count and each partition's
// leader. A node knows the leader only of the partitions it hosts, so the
// answer of the node asked first (the cluster's leader) is completed by
// asking, for each partition whose leader it did not know, the nodes that
// host it (each node once, one attempt each: a node that does not answer
// leaves the leader unknown, and appends to that partition go through the
// cluster's leader, which forwards them).
func (c *Client) describeRoutes(ctx context.Context, name string) (topicEntry, error) {
	d, asked, err := c.describe(ctx, name)
	if err != nil {
		return topicEntry{}, err
	}
	e := topicEntry{partitions: d.Topic.Partitions, routes: make([]partitionRoute, d.Topic.Partitions)}
	var unknown []int
	for _, p := range d.Partitions {
		if p.Partition < 0 || p.Partition >= len(e.routes) {
			continue
		}
		e.routes[p.Partition] = routeOf(p, asked)
		if e.routes[p.Partition].leader == "" {
			unknown = append(unknown, p.Partition)
		}
	}
	tried := map[string]bool{asked: true}
	for _, p := range unknown {
		for _, addr := range e.routes[p].replicas {
			if e.routes[p].leader != "" {
				break
			}
			if tried[addr] || ctx.Err() != nil {
				continue
			}
			tried[addr] = true
			more, err := c.describeOn(ctx, addr, name)
			if err != nil {
				c.logger.Debug("a partition's replica did not describe the topic", "topic", name, "addr", addr, "err", err)
				continue
			}
			// The node answers for every partition it hosts.
			for _, q := range more.Partitions {
				if q.Partition < 0 || q.Partition >= len(e.routes) || e.routes[q.Partition].leader != "" {
					continue
				}
				if r := routeOf(q, addr); r.leader != "" {
					e.routes[q.Partition] = r
				}
			}
		}
	}
	for _, r := range e.routes {
		if r.leader == "" {
			e.incomplete = true
		}
	}
	return e, nil
}

// describeOn asks the server at addr once, within discoveryTimeout.
func (c *Client) describeOn(ctx context.Context, addr, name string) (*TopicDescription, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	resp, err := c.client(addr).DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: name})
	if err != nil {
		c.markDown(addr, err)
		return nil, err
	}
	return descriptionOf(resp), nil
}

// routeOf is where partition p lives by the answer of the server at
// asked: its leader's address (the replica marked leader, or named by
// Leader) and its replicas'.
func routeOf(p PartitionState, asked string) partitionRoute {
	var r partitionRoute
	for _, rep := range p.Replicas {
		addr := reachableAddr(rep.RPCAddr, asked)
		if addr == "" {
			continue
		}
		r.replicas = append(r.replicas, addr)
		if r.leader == "" && (rep.IsLeader || (p.Leader != "" && rep.NodeID == p.Leader)) {
			r.leader = addr
		}
	}
	return r
}

// reachableAddr is addr as the client should dial it, having learned it
// from the server at asked (see reachable).
func reachableAddr(addr, asked string) string {
	if addr == "" {
		return ""
	}
	out := reachable([]*logv1.Server{{RpcAddr: addr}}, asked)
	return out[0].GetRpcAddr()
}

// dest is the partition an append goes to, when the client knows it.
type dest struct {
	topic     string
	partition int
}

// destOf returns the partition an append of records to t goes to: the one
// t names, else the one the records' keys map to when they all have a key
// and map to one partition of a topic whose partition count the client
// knows. nil: the server places the records.
func (c *Client) destOf(ctx context.Context, t target, records []*logv1.Record) *dest {
	if t.partitionSet {
		return &dest{topic: t.topic, partition: t.partition}
	}
	if len(records) == 0 {
		return nil
	}
	for _, r := range records {
		if len(r.GetKey()) == 0 {
			return nil
		}
	}
	n := c.partitionCount(ctx, t.topic)
	if n <= 0 {
		return nil
	}
	p := catalog.PartitionForKey(records[0].GetKey(), n)
	for _, r := range records[1:] {
		if catalog.PartitionForKey(r.GetKey(), n) != p {
			return nil // the server refuses them; let it say so
		}
	}
	return &dest{topic: t.topic, partition: p}
}

// partitionLeader returns the address of the leader of d's partition as
// the client knows it ("" when unknown, or when it recently failed to
// connect) and which answer of the topic cache said so.
func (c *Client) partitionLeader(ctx context.Context, d *dest) (addr string, gen uint64) {
	e := c.topicEntry(ctx, d.topic)
	if d.partition >= len(e.routes) {
		return "", e.gen
	}
	addr = e.routes[d.partition].leader
	if addr == "" {
		return "", e.gen
	}
	c.mu.Lock()
	down := c.isDown(addr, c.cfg.Now())
	c.mu.Unlock()
	if down {
		return "", e.gen
	}
	return addr, e.gen
}

// leadershipMoved reports a failed append that a change of the
// partition's leader or of where it lives may explain: the failures that
// make the client ask for the servers again (shouldRefresh: no connection,
// Unavailable, not applied for a reason that may pass elsewhere), and
// NotFound (the topic was deleted, perhaps created again).
func leadershipMoved(err error) bool {
	return shouldRefresh(err) || connect.CodeOf(err) == connect.CodeNotFound
}
