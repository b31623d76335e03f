// Package service serves the log over HTTP: the LogService Connect handlers
// (Connect, gRPC and gRPC-Web on one port), the authentication and ACL
// middleware in front of them, gRPC reflection and health checks, Prometheus
// metrics and the dashboard, and the http.Server that runs them.
//
// # Who may do what
//
// The caller's subject is the Common Name of its client certificate, as
// verified against the configured CA; without one (or over plaintext
// HTTP/2) it is "anonymous". The middleware checks the Authorizer by URL
// path before any body is read, decompressed or decoded:
//
//	/log.v1.LogService/Produce, ProduceBatch, ProduceStream   produce
//	/log.v1.LogService/Consume, ConsumeStream, GetStats, GetServers   consume
//	/grpc.reflection.v1.ServerReflection/*, v1alpha, GET /metrics   admin
//	/log.v1.LogService/WhoAmI, /grpc.health.v1.Health/*, the dashboard at /   open
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
//     Config.MaxRecordBytes); not the leader and not forwarded (no leader
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
// ConsumeStream reads the log in batches and, at its end, waits on
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
// A replicated log plugs in through three hooks: Config.Nodes answers
// GetServers, Config.Forward sends appends a follower refuses to the
// leader (Produce, ProduceBatch and each ProduceStream group), and
// ServerConfig.Handoffs hands TLS connections that negotiated another ALPN
// protocol ("proglog-raft") to their owner, on the same port. A Forwarder
// is the Config.Forward of a cluster.Log: it forwards the appends refused
// with a *cluster.NotLeaderError that names a leader, over one cached
// client per leader address, presenting the node's own certificate.
//
// Forwarded appends are authorized as peers: the follower has already
// checked the original caller's right to produce, so the leader lets a
// request produce, without an ACL line, when it carries ForwardedHeader
// AND its verified client certificate may authenticate a server
// (x509.ExtKeyUsageServerAuth). Node certificates from the cluster's CA
// (pki IssueServer) have that usage; user certificates (IssueClient) have
// client-auth only, so a user who sends the header gets no extra right.
// A peer gets produce and consume this way (consume so that a node can
// heal a damaged record of its store from a peer's copy:
// Forwarder.FetchRecord; a node holds every record anyway), nothing else,
// and its appends are never forwarded a second time: a node that lost
// leadership meanwhile answers Unavailable and the first node's client
// retries.
//
// Cluster errors are Unavailable, so clients retry: no leader known
// (an election), a Raft queue timeout, a closed node, a node whose copy
// failed to apply. cluster.ErrUnknownOutcome is Unavailable too, with a
// message saying the write may or may not have been committed and a retry
// may duplicate it. So is a forwarded append whose connection to the
// leader failed (the leader's own errors come back as they are, with their
// error details). Each carries its AppendOutcome (see Append outcomes).
//
// # Shutdown
//
// Server.Shutdown cancels every request context with ErrShuttingDown:
// tails end at once with Unavailable, produce streams stop reading,
// acknowledge what they have received and end with Unavailable, and
// unary produces already under way complete.
package service
