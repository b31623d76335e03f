// Package raftmux carries the Raft RPCs of many hashicorp/raft groups
// between two nodes over one connection per direction: a raft.Transport
// per group (Mux.Transport), all sharing their node's connections.
//
// hashicorp/raft's NetworkTransport gives every group its own connections
// (a pool per peer, a pipeline connection, a heartbeat connection), each
// RPC a write and a blocking read on its own connection, each connection
// with 256 KiB of buffers. A node hosting hundreds of partitions, each a
// group, then spends most of a core on idle groups' heartbeats and empty
// AppendEntries (docs/benchmarks.md, issue 12). Here a node dials each peer
// once; every group's requests to that peer go out on that connection and
// the answers come back on it, matched by request id, so any number of
// RPCs of any groups are in flight at once.
//
// # Connections
//
// The Mux does not listen or dial by itself: Config.Dial opens a
// connection of a Kind to a peer (the node's stream layer: mutual TLS, the
// proglog-raft ALPN and a preamble that routes it to the peer's Mux), and
// the node hands each inbound connection of the Mux's kinds to Serve. A
// node dials a peer for its own requests; the peer answers on that
// connection and sends its own requests on the connection it dials, so a
// pair of nodes shares two connections (KindRPC), whatever the number of
// groups. A connection that fails (read or write error, a write stuck
// past Config.Timeout, or nothing read for Config.Timeout while a request
// waits) fails every request in flight on it at once with an error; the
// next request dials again, and after a failed dial (or a connection that
// ended before any answer came back on it, such as one a node of an older
// version refuses) the peer is not dialed again for a backoff (50 ms
// doubling to 2 s, reset by the first answer on a new connection; requests
// in that window fail at once with the last error, and raft backs off too).
//
// # Frames
//
// On a KindRPC connection the dialer sends requests and the acceptor
// answers them:
//
//	request:  <type: 1 byte> <id: 8 bytes, big endian> <name length: 1 byte> <group name> <msgpack body>
//	response: <status: 1 byte> <id: 8 bytes, big endian> <msgpack body>
//
// The type is one of reqAppendEntries, reqRequestVote, reqRequestPreVote
// and reqTimeoutNow; the body is raft's request struct, encoded with
// go-msgpack as NetworkTransport encodes it. The status is statusOK (body:
// raft's response struct) or statusError (body: the error's text, which
// the caller gets as its error). Ids are the dialer's, one counter per
// connection. A request for a group that is not running on the acceptor is
// answered with an error, so the caller's raft backs off as it does when a
// peer is down.
//
// # Writing: one goroutine, one write for whatever is queued
//
// Each connection has one writer goroutine. Senders queue frames (bounded:
// Config.MaxQueued frames and Config.MaxQueuedBytes, beyond which senders
// wait, up to Config.Timeout, then fail); the writer encodes everything
// queued into one buffer and writes it with one call, so frames that
// arrive while a write is under way leave together in the next one.
// Idle traffic (heartbeats, AppendEntries without entries, and the answers
// to them) may wait up to Config.FlushDelay (5 ms) for company, and does
// not even wake the writer while it waits: hundreds of groups' heartbeats
// then cost one wake-up and one write per FlushDelay and connection
// instead of one each. Anything else (entries, votes, TimeoutNow and their
// answers) wakes the writer and is written at once, taking the waiting
// idle frames with it.
//
// # Reading
//
// Each connection has one reader goroutine. On the acceptor it decodes a
// request and hands it to its group: a heartbeat goes straight to raft's
// heartbeat handler (raft.Transport.SetHeartbeatHandler) on the reader's
// goroutine, as NetworkTransport's fast path does, since it needs no disk;
// anything else goes into the group's queue (Config.InboundQueue
// requests; a full queue answers the request with an error rather than
// hold up other groups), which one goroutine per group feeds to raft's
// Consumer, in order, sending each answer back as raft gives it. A group
// whose raft is busy (an fsync, a snapshot being restored) therefore
// delays only its own requests.
//
// AppendEntries pipelining (raft.AppendPipeline) is supported: a
// pipeline sends each request as raft gives it and hands the answers back
// in order, at most Config.MaxInFlight in flight. Like NetworkTransport's,
// it holds only that many answers for raft, and hashicorp/raft stops
// reading them at the first failed one while it may still send: the
// sender then blocks for good. proglog's cluster package hands raft every
// pipeline's answers through a relay that always takes them
// (cluster/transport.go); raft used straight on a Transport does not.
//
// AppendEntries that carry entries outlive a failed connection:
// hashicorp/raft resends a failed one only at its next CommitTimeout tick
// or new entry, so an idle group (proglog's partitions tick every 2 s)
// would wait that long to commit entries whose answers a broken connection
// lost. A pipeline whose connection fails dials again, after each failed
// dial's backoff, for up to Config.Timeout after its oldest unanswered
// request was first sent, and sends its unanswered requests once more, in
// order, before any new one; only then does raft see the failure (and
// proglog's cluster package closes a pipeline raft still waits on when it
// shuts down). An AppendEntries with entries outside a pipeline is sent
// once more if a new connection comes at once. Raft handles a repeated
// AppendEntries as any other: a follower keeps entries it already holds at
// the same term.
//
// # Commit pushes
//
// An idle hashicorp/raft leader tells a follower the commit index only with
// its next AppendEntries, at the next CommitTimeout tick; those ticks
// (raft's default 50 ms) are two thirds of an idle group's RPCs, and a
// longer CommitTimeout makes followers apply records that much later. With
// Transport.SetCommitIndex, the leader's transport sends a follower the
// commit index itself as soon as the leader has committed entries the
// follower is known to hold (an AppendEntries of the same term whose
// previous entry is the last one the follower acknowledged, its answer
// dropped: commit.go argues why that is safe). A group can then run a long
// CommitTimeout without follower lag.
//
// # Snapshots
//
// InstallSnapshot dials a connection of its own (KindSnapshot), sends the
// group's name, the request and the snapshot's bytes, reads the answer and
// closes it, as NetworkTransport does; a snapshot of gigabytes never holds
// up other groups' RPCs on the shared connection. Its deadline grows with
// the snapshot's size (Config.Timeout per 256 KiB, as NetworkTransport's).
//
//	<name length: 1 byte> <group name> <msgpack request> <Size bytes of snapshot>
//	answer: <msgpack error text> <msgpack response>
//
// # Closing
//
// Closing a group's Transport fails its requests in flight and answers its
// peers' queued requests with an error; other groups go on. Closing the Mux
// closes every connection and waits for every goroutine it started.
package raftmux
