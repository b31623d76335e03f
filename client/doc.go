// Package client is a Go client for a proglog cluster: it finds the servers,
// sends appends to the leader, spreads reads over the other nodes and follows
// leadership changes.
//
// # Discovery
//
// New asks the seed addresses for GetServers and keeps the answer: which node
// leads and which follow. It asks again every Config.RefreshInterval and after
// any failure that suggests the picture changed (a refused connection, a
// node that says it does not lead). Each refresh tries the known servers
// first and then the seeds, so the client survives the loss of every seed as
// long as it learned about the other nodes. A subject whose certificate may
// produce but not consume cannot call GetServers; the client then treats the
// seeds as servers of unknown role and lets them forward appends to the
// leader.
//
// # Where calls go
//
// Produce, ProduceBatch, ProduceRecords and Producer streams go to the leader
// (to any server while no leader is known: a follower forwards appends to the
// leader); appends whose partition the client knows go to that partition's
// leader instead (see Topics and partitions). Consume, ConsumeTime, Tail and TailBatches go round robin over the
// followers, or to the leader when it is alone. A read a follower answers
// with OutOfRange for an offset at or past its end (by the OffsetRange error
// detail the server attaches: offset >= next; for ConsumeTime, any
// OutOfRange) is asked of the leader once: a follower may lag the leader by
// a few records, and the leader answers for records the caller has just
// produced. Stats, WhoAmI and OffsetForTime ask the leader, whose answers
// are the freshest, and another server while it does not answer;
// ServerStats asks the one server named. A server reporting an unspecified
// host (0.0.0.0, ::; a standalone node serving on every interface) is
// reached at the host it was asked at.
//
// # Records
//
// A record has a value and may have a key and headers (ProduceRecords,
// Producer.SendRecords); the server sets its offset and its time, when the
// leader appended it, which never decreases along the log. Header keys
// are checked before anything is sent (ValidateRecord). Reads start at an
// offset, or at the first record at or after a time: OffsetForTime,
// ConsumeTime, and Tail with FromTime. Tail follows the log until stopped;
// with Until it reads a range and returns at its end. TailBatches hands
// over each stream message's records at once (MaxBatch caps them). With
// ReuseRecords a tail decodes each message into the memory of the one
// before, allocating nothing per record, for a callback that is done with
// its records when it returns.
//
// # Topics and partitions
//
// Every produce and read takes the options Topic and Partition (a
// Producer takes them once, for all its Sends); without Topic a call uses
// the topic "default", and a read without Partition reads partition 0.
// An append without Partition goes where its records' keys map to (Kafka's
// default partitioner, catalog.PartitionForKey), and records without a key
// where the server spreads them. One request goes to one partition, so
// ProduceSplit and a Producer split records whose keys map to different
// partitions into one request per partition, naming it, in the order given
// within each partition; the partition count comes from DescribeTopic,
// cached per topic for Config.RefreshInterval and asked again after a
// refusal a stale count explains (NotFound, InvalidArgument). When the
// count cannot be learned (a server without topics, an identity that may
// not describe the topic) records go unsplit and the server decides.
// ProduceSplit and Ack.Appended say which partition and offset each record
// got. CreateTopic, UpdateTopic and DeleteTopic go to the leader and are
// retried like appends; ListTopics and DescribeTopic are reads.
//
// Each partition is its own Raft group with its own leader. An append
// whose partition the client knows (named with Partition; split to it by
// ProduceSplit; or, for ProduceBatch and ProduceRecords without Partition,
// records that all have keys mapping to one partition of a topic whose
// count the client knows) goes straight to that partition's leader. The
// client learns the leaders with the partition count: a node knows the
// leader only of the partitions it hosts, so the answer of the cluster's
// leader is completed by asking, once each, the nodes that host the
// partitions whose leader it did not know (their addresses are in the
// answer's replicas). An answer that still misses a leader is trusted for
// Backoff.Max only, others for RefreshInterval; an append to a partition
// that fails in a way a change of leader explains (no connection,
// Unavailable, not applied for a reason that may pass elsewhere, NotFound)
// makes the next attempt or call ask again. While a partition's leader is
// unknown, or recently failed to connect, its appends go to the cluster's
// leader, as do appends the client cannot place (records without a key,
// unknown counts): a server forwards an append to its partition's leader
// (at most two hops), so a leader that moved since the client asked still
// gets it, through the node the client knew. The retry rules below are
// the same wherever an attempt goes.
//
// A Producer with a Partition option streams straight to that
// partition's leader the same way (a stream that breaks in a way a change
// of leader explains makes the next one ask again); one Producer per
// partition is how to write many partitions fast. A Producer without
// Partition has one stream, to the cluster's leader, which forwards each
// request to its partition's leader. Reads do not route by partition yet:
// they go to the followers (or the leader) as without topics, and the
// servers forward them to a replica of the partition.
//
// # What is retried
//
// Attempts are spaced by exponential backoff with jitter (Config.Backoff:
// each wait is drawn between half and all of min(Max, Initial·2^n)) and
// capped by Config.Retries; ctx bounds them all.
//
// Appends (Produce, ProduceBatch) are retried only when they certainly did not
// happen:
//
//   - the connection to the server could not be opened (a dial error such
//     as "connection refused": nothing was sent);
//   - the server's answer carries an AppendOutcome error detail of
//     OUTCOME_NOT_APPLIED (the server puts one on every failed produce) and
//     a code that may pass on another attempt: it is not the leader and
//     could not forward, no leader is known, Raft could not even queue the
//     entry, or its forward to the leader never connected. The decision
//     rests on the detail, never on message text.
//
// Any other failure after the request may have left the client is reported
// as ErrUnknownOutcome wrapping the cause, and never retried: the record may
// or may not be in the log, and only the caller can decide whether a
// duplicate is acceptable. That covers a connection lost mid-request, ctx
// ending while the request was out, the detail saying OUTCOME_UNKNOWN (a
// forward that failed on the way, leadership lost while replicating, a Raft
// log write that ran out of disk), and answers without a detail other than
// the refusals below. Answers that reject the request itself
// (InvalidArgument, ResourceExhausted, PermissionDenied, Unauthenticated,
// FailedPrecondition, OutOfRange, Unimplemented, NotFound, AlreadyExists)
// are returned as they are when they say not applied or say nothing (the
// server's authentication, ACL and message limit answer before its
// handlers, without a detail): sending them again gets the same answer.
// A full disk (ResourceExhausted, not applied) is among them.
//
// A Producer (NewProducer) pipelines appends over one ProduceStream and
// retries nothing: when its stream breaks, each request sent and not yet
// acknowledged fails with the dial error when the stream never connected,
// or with the server's answer as it is when that answer says nothing of
// them was written (as for an append above: the AppendOutcome detail of a
// stream's error speaks for every request not yet acknowledged); with
// ErrUnknownOutcome otherwise. The next Send opens a stream to the leader as
// the client then knows it, unless the Producer is Ordered: then it fails
// with the first failure, so nothing is appended after a gap.
//
// Reads (Consume, Tail, Servers, Stats...) have no side effects and are
// retried, on another server when there is one, after a dial error, a lost
// connection, Unavailable, Aborted, ResourceExhausted (a tail the server
// dropped as a slow consumer), Unknown or Internal, and an OutOfRange past
// the end from a
// node that may lag (by its OffsetRange detail; an offset below the lowest
// retained one is final). Tail resumes from the offset after the last
// record it delivered, so the callback sees every record once, in order,
// across reconnects; OnResume hears of each reconnection.
//
// # Transport
//
// Calls use the generated Connect client over HTTP/2: TLS (with ALPN h2)
// when Config.TLS is set, prior-knowledge HTTP/2 over plaintext otherwise.
// Config.Protocol picks the Connect, gRPC or gRPC-Web wire protocol.
package client
