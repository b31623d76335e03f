// Package membership finds the nodes of a proglog cluster with Serf
// (gossip over UDP and TCP, encrypted with a shared key) and tells a
// Handler when members join, leave and stay failed, so the Raft leader can
// add and remove voters.
//
// Each member gossips its node ID (Serf's node name) and the tag rpc_addr,
// its TLS port, which is also its Raft address. Serf's events and a
// reconcile every ReconcileInterval reach the Handler from one goroutine.
// Because only the leader can change the Raft configuration, everything
// starts with Handler.Voters, which on a node that is not the leader
// returns an error wrapping raft.ErrNotLeader: the event is then ignored,
// and the reconcile covers the events the leader missed (it was a follower
// then, or had no leader yet). Handler methods must therefore be
// idempotent (cluster.Log's are).
//
// # Joining: the gossip key is not enough
//
// Holding the gossip key lets a process gossip, not vote. A member that
// is alive and not yet a voter at the address it gossips is first passed
// to Config.Verify; only if that succeeds does the leader call
// Handler.Join. TLSVerifier, which proglog serve uses, dials the member's
// rpc_addr with the node's own TLS client configuration (its certificate,
// and the cluster's CA as the only root) and ServerName set to that
// address's host, so the member must present a server certificate of the
// cluster's CA, valid now, for server authentication and for that host,
// and prove it holds the key; it must then also accept this node's
// certificate (its first HTTP/2 frame arrives, not a TLS alert), since it
// could not take part in Raft otherwise. The node ID is not checked:
// proglog's server certificates name hosts, not nodes, and nodes may share
// one; the certificate vouches for the address.
//
// A refused member stays out. The refusal is logged with its reason once
// per member and reason (ErrForeignCertificate, ErrWrongAddress,
// ErrPeerRefused, ErrUnreachable), counted in
// proglog_membership_joins_refused_total, and the member is checked again
// on every reconcile, so a legitimate node that was not listening yet is
// admitted once it is. Nothing is blacklisted.
//
// # Leaving and failing
//
// A graceful leave (and Serf's own reap, after a day) removes the member
// from the voters. A member that fails (crashes, is cut off) stays a voter
// so it can come back with its data, but only for ReapFailedAfter: then
// the leader removes it from the voters (Handler.RemoveFailed) and from
// Serf (RemoveFailedNode: Serf stops reconnecting to it and no member
// brings it back as failed), provided a quorum remains without it. Two
// checks guard that: the voters other than it that gossip sees alive must
// be a majority of the configuration without it, and the leader must get
// an answer from a quorum of the current configuration (raft's
// VerifyLeader; gossip can still see a dying member alive). So two failed
// voters of three are never removed: the survivor could not commit the
// change, and keeping them lets the cluster recover when they return. A
// removed node that comes back joins again like a new one: it is verified
// and added as a voter, and catches up from the leader. Removals are
// counted in proglog_membership_failed_members_removed_total.
//
// A node that restarts with the same ID and gossip address rejoins as
// itself, from Config.Join or, with Config.SnapshotPath, from the members
// Serf remembered. A node without the cluster's key cannot join: memberlist drops
// its unencrypted or wrongly encrypted messages.
package membership
