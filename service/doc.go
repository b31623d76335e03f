// Package service serves proglog's topics over HTTP: the LogService Connect
// handlers (Connect, gRPC and gRPC-Web on one port), the authentication and
// ACL middleware in front of them, gRPC reflection and health checks,
// Prometheus metrics and the dashboard, and the http.Server that runs them.
//
// # Topics and partitions
//
// Every produce and read names a topic ("" is "default") and a partition;
// Config.Topics is the node's view of them (the catalogue, and the
// partitions this node hosts). Without Config.Topics (a standalone node,
// no Raft) the service serves one topic, "default", of one partition,
// Config.Log; CreateTopic, UpdateTopic and DeleteTopic then answer
// FailedPrecondition.
//
// The partition of a produce (Produce, ProduceBatch, each ProduceStream
// request) is chosen thus:
//
//   - partition set: that one; NotFound, naming how many partitions the
//     topic has, if it has no such partition.
//   - else, a record with a (non-empty) key: catalog.PartitionForKey(key,
//     n), the murmur2 of Kafka's default partitioner, so a key always
//     lands on the same partition while the topic keeps n partitions.
//   - else: round robin over the topic's partitions, one counter per topic
//     on each node.
//
// A request goes to one partition, written as one durable write: without
// partition, its keyed records must all map to the same partition
// (InvalidArgument otherwise, nothing written), and its records without
// a key go with them. The chosen partition comes back in the response's
// partition field. A topic's max_record_bytes, when set, lowers the
// node's Config.MaxRecordBytes for its records.
//
// # Routing
//
// Topics.Partition gives the partition's log when this node hosts it, or
// *NotHostedError naming the nodes that do. Then, through Config.Peer (a
// Forwarder's Client): a produce goes to the partition's leader, or, while
// this node does not know it, through Config.Relay (a Forwarder's Relay,
// marked with RelayHeader) to a replica, which may pass it on once more,
// to its leader; Consume, GetStats and
// GetOffsetForTime go to one of its replicas, chosen at random, the next
// one tried while one cannot be reached; a ConsumeStream is proxied from
// one replica: its responses are relayed until either side ends, the
// peer's end (error or not) becomes the stream's, and the client's leaving
// or a shutdown cancels the peer's stream. The forwarded request names the
// partition this node chose, so the peer does not choose again. A peer's
// own answers come back as they are; a failure to reach it is Unavailable.
// A produce for a hosted partition whose log follows a known leader goes
// to that leader through Config.Forward (see Clusters) without trying the
// log; one whose log refuses the append with *cluster.NotLeaderError
// (leadership moved meanwhile) goes there too, and so does a CreateTopic, UpdateTopic or DeleteTopic that
// Topics refuses so (the system group's leader makes topic changes);
// ListTopics and DescribeTopic are answered from this node's view. No
// request is forwarded twice: a forwarded request that meets a stale view
// (not hosted, or not the leader, here either) fails with Unavailable and
// the first node's client retries.
//
// A ProduceStream keeps its acknowledgements in request order while its
// requests take different ways: it appends those for partitions this node
// leads itself, and hands those for partitions another node leads
// (hosted here as a follower, or not hosted) to a forwarder per partition, which sends them to the leader in order,
// the requests queued behind a forward together in the next. Forwards to
// different partitions are on their way at once; a partition's requests
// stay in order (an append here first waits for that partition's
// forwarder to be done).
//
// # Who may do what
//
// The caller's subject is the Common Name of its client certificate, as
// verified against the configured CA; without one (or over plaintext
// HTTP/2) it is "anonymous". Rights are per topic (Authorizer.Allowed).
// The middleware checks them by URL path before any body is read,
// decompressed or decoded, with Authorizer.AllowedAny (some rule allows the
// action on some topic) or AllowedCluster (a rule on object "*"):
//
//	/log.v1.LogService/Produce, ProduceBatch, ProduceStream   produce on any topic
//	/log.v1.LogService/Consume, ConsumeStream, GetStats,
//	  GetOffsetForTime, GetServers, DescribeTopic             consume on any topic
//	/log.v1.LogService/ListTopics                             consume or produce on any topic
//	/log.v1.LogService/CreateTopic, UpdateTopic, DeleteTopic  admin on any topic
//	/grpc.reflection.v1.ServerReflection/*, v1alpha, GET /metrics   admin on "*"
//	/log.v1.LogService/WhoAmI, /grpc.health.v1.Health/*, the dashboard at /   open
//
// so a caller no rule lets do anything of the kind is refused before its
// body is read. Each handler then checks the request's own topic: produce
// on it for the produces (for ProduceStream, each request's topic, the
// decision kept per topic for the stream's life); consume on it for the
// reads and DescribeTopic; admin on it for CreateTopic, UpdateTopic and
// DeleteTopic. ListTopics lists the topics the caller may consume or
// produce to; GetServers needs consume on some topic only. WhoAmI's
// actions are those allowed on some topic (Authorizer.Actions).
//
// Health stays open so load balancers and Kubernetes probes need no
// certificate; requests to open RPCs (and to reflection) are capped at
// 64 KiB, so anonymous callers cannot make the server buffer much. Reflection and metrics describe the server to whoever asks,
// so they need "admin": a Prometheus scraper gets its own certificate and a
// rule such as "p, prometheus, *, admin". A refused anonymous caller gets
// Unauthenticated, a refused authenticated one PermissionDenied, both with
// a message naming the subject and the action.
//
// # Limits
//
// Anyone who reaches the port can open connections and streams, so what
// each caller can make the server hold is bounded (ServerConfig.Limits,
// the serve flags in brackets, defaults from DefaultLimits):
//
//   - Connections: at most MaxConns open (--max-conns, 1024), counted from
//     accept, TLS handshakes and Raft's included; more are closed at once.
//     Each TLS handshake runs in its own goroutine under HandshakeTimeout
//     (--handshake-timeout, 10s), so Accept never waits on a slow client.
//   - Anonymous connections (the handshake presented no verified client
//     certificate): at most MaxAnonymousConns (--max-anonymous-conns, 128);
//     more are closed right after the handshake. Connections that
//     negotiated a Handoffs protocol (Raft's "proglog-raft") are neither
//     counted nor refused by this cap; only MaxConns applies to them.
//   - HTTP/2 streams per connection: MaxStreams (--max-streams, 250) for
//     authenticated callers, MaxAnonymousStreams (--max-anonymous-streams,
//     8) for anonymous ones, who reach only health checks, WhoAmI and the
//     dashboard's files. Anonymous HTTP/2 connections also get headers of
//     at most 16 KiB and a 64 KiB receive window (authenticated: headers of
//     MaxHeaderBytes, --max-header-bytes, 64KiB; windows 4 MiB a stream,
//     8 MiB a connection, for pipelined producers).
//   - Request bodies: a request has BodyTimeout (--body-timeout, 10s)
//     after its headers to deliver its body; then reading it fails, the
//     call ends with DeadlineExceeded and its goroutine is freed. For
//     client streams (ProduceStream, reflection) the deadline covers only
//     the first message: a producer may then pause for as long as it
//     likes, and server streams (ConsumeStream) have sent their one
//     request message at the start. The deadline is lifted as soon as the
//     body (or first message) is in, so it never cuts a long tail. For
//     authenticated callers it is an idle timeout: data arriving pushes it
//     on, so a large batch over a slow link is not cut while it moves.
//   - Idle connections (no request in flight) close after IdleTimeout
//     (--idle-timeout, 2m); dead peers are found by HTTP/2 pings.
//   - A header block split into more than 128 CONTINUATION frames closes
//     the connection. net/http bounds header bytes (CVE-2023-45288) but
//     not empty frames, which kept a connection busy forever.
//
// The cost is then bounded. Measured (docs/security.md): a stalled TLS
// handshake holds ~27 KB of RSS, an anonymous connection with its 8
// streams full of headers ~0.4 MB; with the defaults that is at most
// 896 x 27 KB + 128 x 0.4 MB = ~75 MB over a ~21 MB baseline, and the
// whole flood measured 100-115 MB (the parts do not add up exactly: the
// garbage collector's timing). The documented bound is 150 MB of RSS in
// all; the slow test
// TestAnonymousStreamFloodMemoryBound checks it against a real process.
// Authenticated callers are trusted further: their bound is MaxConns x
// MaxStreams requests, each limited by Config.MaxMessageBytes.
// The metrics proglog_server_connections{class} and
// proglog_server_refused_connections_total{reason} show the limits at
// work. Without TLS (--insecure) there are no connection caps and every
// connection gets the authenticated stream limits.
//
// HTTP/2 over TLS is served by golang.org/x/net/http2 (see h2.go): in
// Go 1.26 net/http has no per-connection settings and no way to read the
// connection's frames.
//
// # TLS
//
// TLS 1.2 and 1.3. For TLS 1.2 only ECDHE key exchange with AEAD ciphers
// (AES-GCM, ChaCha20-Poly1305) is offered; CBC suites, which Go still
// enables by default, are not. TLS 1.3 suites are all AEAD.
//
// # Errors
//
// Topic errors name the topic (and partition): a topic or partition that
// does not exist is NotFound, a name taken AlreadyExists, a malformed name
// or setting InvalidArgument (topic RPCs check names with
// catalog.ValidName before anything else), too few nodes for the
// replication factor, deleting "default", or any change on a standalone
// node FailedPrecondition.
//
// Log errors become Connect codes in one place (errors.go): an offset
// outside the log is OutOfRange, with the lowest or next offset in the
// message and both in an OffsetRange error detail (lowest, next: the
// bounds when the read was answered; the offset asked for is past the end
// when it is at least next); a record over Config.MaxRecordBytes, an empty batch or one of
// more than 65536 records is InvalidArgument, checked before the log is
// touched; a message over
// Config.MaxMessageBytes is ResourceExhausted; corrupt data is DataLoss; a
// closed or failed log, or a server shutting down, is Unavailable.
//
// # Append outcomes
//
// Every failed Produce, ProduceBatch and ProduceStream carries an
// AppendOutcome error detail saying what became of the records the caller
// holds no acknowledgement for, so clients decide about retrying on a value
// rather than on the code or the message. OUTCOME_NOT_APPLIED: nothing was
// written, retrying is safe. OUTCOME_UNKNOWN: the records may have been
// committed, a retry may duplicate them. The rule is "not applied only when
// the error proves it":
//
//   - not applied: a request refused by its own checks (InvalidArgument:
//     no record, an empty or too large batch, a record over
//     Config.MaxRecordBytes or its topic's limit, keys for different
//     partitions); a topic or partition that does not exist (NotFound);
//     the topic's ACL (PermissionDenied, Unauthenticated); a partition not
//     hosted here and not forwarded; not the leader and not forwarded (no leader
//     known, or already forwarded once); Raft could not queue the entry
//     (cluster.ErrTimeout); the disk is full before the write
//     (cluster.ErrDiskFull alone); a closed cluster.Log; forwarding whose
//     connection to the leader never opened (a dial error); a leader's
//     answer without an outcome whose code only a refusal before its
//     handlers gives (Unauthenticated, PermissionDenied, ResourceExhausted,
//     InvalidArgument, Unimplemented).
//   - unknown: cluster.ErrUnknownOutcome (leadership lost or a timeout
//     while replicating, a shutdown, a Raft log write that ran out of
//     space: its chain may hold ErrDiskFull or ErrClosed too, and it wins);
//     a forward whose connection broke after it was sent, or whose context
//     ended; the leader answering for a different number of records; a
//     closed or failed logstore.Log (the append that met the close or the
//     failed fsync may be on disk); and anything else.
//   - the leader's own: a forwarded append's failure that the leader
//     answered keeps the leader's outcome (Connect passes details through
//     the follower unchanged).
//   - ProduceStream: a request that failed to arrive or its checks ends
//     the stream as not applied, and so does a shutdown (it stops reading
//     and acknowledges every request received). A failed write (the
//     appender's) has the outcome above; a failure to send an
//     acknowledgement, or a client that left, is unknown. Requests
//     acknowledged before the error are written in every case.
//
// Refusals that come before the handlers, from the authentication and ACL
// middleware (Unauthenticated, PermissionDenied) or Connect's message limit
// (ResourceExhausted), carry no detail; nothing was written for them.
//
// # Streams
//
// ConsumeStream reads the partition's log in batches and, at its end, waits on
// Log.Wait (no polling) until the client leaves or the server shuts down.
// It holds one batch in hand (at most 1024 records and about 1 MiB); a
// batch the client does not accept within Config.SlowConsumerTimeout
// (HTTP/2 flow control full because the client stopped reading) resets the
// stream, so a stuck client costs neither memory nor a goroutine for long.
// With one record per response, the responses of a batch share one flush.
//
// ProduceStream is pipelined: requests are received, appended (whatever is
// pending goes in one AppendBatch, one durable write) and acknowledged in
// order by three goroutines, with at most 128 requests or 16 MiB (values
// plus 64 bytes a record) between receipt and acknowledgement. An acknowledgement is sent only after the
// write holding its records is durable; any error ends the stream and
// nothing after it is acknowledged.
//
// # Clusters
//
// A replicated log plugs in through these hooks: Config.Topics routes
// requests to partitions (see Routing), Config.Nodes answers GetServers,
// Config.Forward sends appends a follower refuses to the leader (Produce,
// ProduceBatch and each ProduceStream group) and topic changes to the
// system group's leader, Config.Peer reaches the nodes hosting a
// partition this node does not, and ServerConfig.Handoffs hands TLS
// connections that negotiated another ALPN protocol ("proglog-raft") to
// their owner, on the same port. A Forwarder provides Forward (for the
// appends and changes refused with a *cluster.NotLeaderError that names a
// leader) and Client (Config.Peer), over one cached client per address,
// presenting the node's own certificate.
//
// Forwarded requests are authorized as peers: the forwarding node has
// already checked the original caller's rights on the topic, so the peer
// lets a request through, without an ACL line, when it carries
// ForwardedHeader (a Forwarder sets it on unary and streaming calls) AND
// its verified client certificate may authenticate a server
// (x509.ExtKeyUsageServerAuth). Node certificates from the cluster's CA
// (pki IssueServer) have that usage; user certificates (IssueClient) have
// client-auth only, so a user who sends the header gets no extra right.
// A peer may this way produce, consume (forwarded reads, proxied
// ConsumeStreams, and healing a damaged record of its store from a peer's
// copy: Forwarder.FetchRecord; a node holds every record anyway) and
// create, update and delete topics on any topic, nothing else (not list
// or describe topics, reflection or /metrics), and its requests are never
// forwarded a second time, except a relayed produce, which a follower
// replica sends on, unmarked, to its leader (so a request makes at most
// two hops): a node that lost leadership or a partition meanwhile
// answers Unavailable and the first node's client retries.
//
// Cluster errors are Unavailable, so clients retry: no leader known
// (an election), a Raft queue timeout, a closed node, a node whose copy
// failed to apply. cluster.ErrUnknownOutcome is Unavailable too, with a
// message saying the write may or may not have been committed and a retry
// may duplicate it. So is a forwarded append whose connection to the
// leader failed (the leader's own errors come back as they are, with their
// error details). Each carries its AppendOutcome (see Append outcomes).
//
// # Tracing
//
// With Config.TracerProvider (a node's, from the tracing package) every
// LogService call is a server span (otelconnect's conventions: named
// after the procedure, with rpc.system.name, rpc.method and the status
// code). A caller's W3C traceparent header, whichever of gRPC, gRPC-Web or
// Connect it speaks, makes the span its child: a trace goes on from a
// client, or from the dashboard, which sends one with each produce. A
// Forwarder made WithForwardTracing gives each call it sends to a peer
// (a produce forwarded or relayed to the leader, a read sent to a replica,
// a proxied ConsumeStream) a client span and sends its traceparent, so the
// trace goes on at the peer. Produce spans carry proglog.topic,
// proglog.partition, proglog.records and, when another node took the
// records, proglog.forwarded; the append itself is traced by the cluster
// package (raft.apply, raft.fsync). A Consume has a proglog.read span
// under its server span; a ConsumeStream has an event, proglog.wait, for
// each wait for new records (with the offset and how long it waited),
// never one span or event per record. Without a TracerProvider no
// interceptor is installed.
//
// # Shutdown
//
// Server.Shutdown cancels every request context with ErrShuttingDown:
// tails end at once with Unavailable, produce streams stop reading,
// acknowledge what they have received and end with Unavailable, and
// unary produces already under way complete.
package service
