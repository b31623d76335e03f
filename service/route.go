package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/proglog/proglog/catalog"
	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
)

// topicName is the topic a request names: "" is the default topic.
func topicName(name string) string {
	if name == "" {
		return catalog.DefaultTopic
	}
	return name
}

// topicErr turns an error of Topics about topic (and partition, when not
// negative) into a Connect error whose message names them.
func topicErr(ctx context.Context, topic string, partition int, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	where := fmt.Sprintf("topic %q", topic)
	if partition >= 0 {
		where = fmt.Sprintf("topic %q partition %d", topic, partition)
	}
	err = fmt.Errorf("%s: %w", where, err)
	var nhe *NotHostedError
	switch {
	case errors.Is(err, catalog.ErrTopicExists):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, catalog.ErrTopicNotFound), errors.Is(err, catalog.ErrPartitionNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, catalog.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, catalog.ErrNotEnoughNodes), errors.Is(err, catalog.ErrProtected), errors.Is(err, errStandalone):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.As(err, &nhe):
		// Not forwarded: no peer client, or the request came from a
		// peer already (its view was stale; its client retries).
		return connect.NewError(connect.CodeUnavailable, err)
	}
	return toConnect(ctx, err)
}

// topic returns the topic named name (normalized) as this node knows it.
func (s *Service) topic(ctx context.Context, name string) (*catalog.Topic, error) {
	t, err := s.topics.Topic(name)
	if err != nil {
		return nil, topicErr(ctx, name, -1, err)
	}
	return t, nil
}

// noPartition is the NotFound of a partition the topic does not have.
func noPartition(t *catalog.Topic, p uint64) error {
	n := len(t.Partitions)
	has := fmt.Sprintf("%d partitions (0 to %d)", n, n-1)
	switch n {
	case 0:
		has = "no partitions"
	case 1:
		has = "1 partition (0)"
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("topic %q partition %d: %w: the topic has %s",
		t.Name, p, catalog.ErrPartitionNotFound, has))
}

// recordLimit is the largest record the topic takes: the node's limit,
// or the topic's when set and lower.
func (s *Service) recordLimit(t *catalog.Topic) int {
	if m := int(t.Config.MaxRecordBytes); m > 0 && m < s.maxRecordBytes {
		return m
	}
	return s.maxRecordBytes
}

// choosePartition picks the partition of a produce to t (see "Choosing a
// partition" in doc.go): the one asked for; else the one the keyed
// records' keys map to, which must be the same for all of them; else the
// topic's next in a round robin.
func (s *Service) choosePartition(t *catalog.Topic, asked *uint32, recs []logstore.Record) (int, error) {
	n := len(t.Partitions)
	if asked != nil {
		if uint64(*asked) >= uint64(n) {
			return 0, noPartition(t, uint64(*asked))
		}
		return int(*asked), nil
	}
	if n == 0 {
		return 0, noPartition(t, 0)
	}
	if n == 1 {
		return 0, nil
	}
	keyed, p := -1, 0
	for i := range recs {
		k := recs[i].Key
		if len(k) == 0 {
			continue
		}
		q := catalog.PartitionForKey(k, n)
		if keyed < 0 {
			keyed, p = i, q
		} else if q != p {
			return 0, invalidArgument("records %d and %d have keys that map to different partitions of topic %q (%d and %d): "+
				"a request goes to one partition; send them separately or name the partition", keyed, i, t.Name, p, q)
		}
	}
	if keyed >= 0 {
		return p, nil
	}
	c, ok := s.spread.Load(t.Name)
	if !ok {
		c, _ = s.spread.LoadOrStore(t.Name, new(atomic.Uint64))
	}
	return int((c.(*atomic.Uint64).Add(1) - 1) % uint64(n)), nil
}

// target is where the records of a produce go: a partition this node
// hosts (log), or the node that leads it (peer).
type target struct {
	log  Log
	peer logv1connect.LogServiceClient
}

// produceTarget routes a produce to partition p of topic: the local log,
// or, when another node hosts it, a client for its leader (or, while the
// leader is unknown, one of its replicas, at random: a client's retry then
// gets past a replica that is down).
func (s *Service) produceTarget(ctx context.Context, topic string, p int) (target, error) {
	log, err := s.topics.Partition(topic, p)
	var nhe *NotHostedError
	switch {
	case err == nil:
		return s.toLeader(ctx, target{log: log}), nil
	case !errors.As(err, &nhe):
		return target{}, topicErr(ctx, topic, p, err)
	}
	addr := nhe.Leader
	if addr == "" && len(nhe.Addrs) > 0 {
		addr = nhe.Addrs[rand.IntN(len(nhe.Addrs))]
	}
	if nhe.Leader == "" && s.relay != nil && !isForwarded(ctx) {
		// A replica, perhaps a follower: it may pass the produce on to
		// its leader.
		if peer, ok := s.relay(addr); ok {
			return target{peer: peer}, nil
		}
	}
	if peer, ok := s.peerClient(ctx, addr); ok {
		return target{peer: peer}, nil
	}
	return target{}, topicErr(ctx, topic, p, err)
}

// replica is a local log that knows whether it leads its Raft group
// (*cluster.Log).
type replica interface {
	IsLeader() bool
	Leader() (id, addr string)
}

// toLeader sends a produce for a local replica that follows another node
// straight to that leader, as Config.Forward would after the replica
// refused it with NotLeader: without the refused attempt, and for a
// ProduceStream through the partition's forwarder, which keeps several
// forwards on their way and groups what queues behind them (a stream used
// to try its replica first and forward one request at a time, which with
// a replica of every partition on every node was every request for a
// partition led elsewhere). With no leader known the local append waits
// for one; a forwarded request is not forwarded again.
func (s *Service) toLeader(ctx context.Context, to target) target {
	r, ok := to.log.(replica)
	if !ok || r.IsLeader() {
		return to
	}
	id, addr := r.Leader()
	if addr == "" {
		return to
	}
	if peer, ok := s.leaderFor(ctx, &cluster.NotLeaderError{LeaderID: id, LeaderAddr: addr}); ok {
		return target{peer: peer}
	}
	return to
}

// peerClient returns a client for the node at addr, unless the request
// came from a peer already (never a second hop) or there is none.
func (s *Service) peerClient(ctx context.Context, addr string) (logv1connect.LogServiceClient, bool) {
	if s.peer == nil || addr == "" || isForwarded(ctx) {
		return nil, false
	}
	return s.peer(addr)
}

// readTarget routes a read of partition p of topic: the local log, or the
// *NotHostedError naming the nodes that hold it.
func (s *Service) readTarget(ctx context.Context, topic string, p uint32) (Log, *NotHostedError, error) {
	t, err := s.topic(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	if uint64(p) >= uint64(len(t.Partitions)) {
		return nil, nil, noPartition(t, uint64(p))
	}
	log, err := s.topics.Partition(topic, int(p))
	var nhe *NotHostedError
	switch {
	case err == nil:
		return log, nil, nil
	case errors.As(err, &nhe):
		return nil, nhe, nil
	}
	return nil, nil, topicErr(ctx, topic, int(p), err)
}

// readPeers returns clients for the nodes holding a partition this node
// does not host, starting at a random one to spread reads; Unavailable
// when there is none to ask.
func (s *Service) readPeers(ctx context.Context, nhe *NotHostedError) ([]logv1connect.LogServiceClient, error) {
	var peers []logv1connect.LogServiceClient
	start := 0
	if len(nhe.Addrs) > 1 {
		start = rand.IntN(len(nhe.Addrs))
	}
	for i := range nhe.Addrs {
		if c, ok := s.peerClient(ctx, nhe.Addrs[(start+i)%len(nhe.Addrs)]); ok {
			peers = append(peers, c)
		}
	}
	if len(peers) == 0 {
		return nil, topicErr(ctx, nhe.Topic, nhe.Partition, nhe)
	}
	return peers, nil
}

// forwardRead sends a read to the nodes that hold a partition this node
// does not host, one after the other while the connection fails (reads
// are safe to repeat); a node's own answer, error or not, is final.
func forwardRead[Resp any](ctx context.Context, s *Service, nhe *NotHostedError, call func(logv1connect.LogServiceClient) (*Resp, error)) (*Resp, error) {
	peers, err := s.readPeers(ctx, nhe)
	if err != nil {
		return nil, err
	}
	var resp *Resp
	for _, peer := range peers {
		if resp, err = call(peer); err == nil || connect.IsWireError(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, peerFailed(ctx, nhe.Topic, nhe.Partition, err)
	}
	return resp, nil
}

// peerFailed keeps a peer's own answers (an error it sent) and turns a
// failure on the way to it into Unavailable, or the caller's own
// cancellation or deadline into theirs.
func peerFailed(ctx context.Context, topic string, partition int, err error) error {
	if connect.IsWireError(err) {
		return err
	}
	if ctx.Err() != nil {
		return toConnect(ctx, ctx.Err())
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf(
		"topic %q partition %d: the node holding it could not be reached: %w", topic, partition, err))
}
