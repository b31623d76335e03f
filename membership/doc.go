// Package membership finds the nodes of a proglog cluster with Serf
// (gossip over UDP and TCP, encrypted with a shared key) and tells a
// Handler when members join and leave, so the Raft leader can add and
// remove voters.
//
// Each member gossips its node ID (Serf's node name) and the tag rpc_addr,
// its TLS port, which is also its Raft address. Events reach the Handler
// from one goroutine: a join (or a tag change) calls Join(id, rpcAddr), a
// graceful leave calls Leave(id). A member that fails (crashes, is cut off)
// is not removed: it stays a Raft voter so it can come back with its data.
// Because only the leader can change the Raft configuration, a Handler
// that is not the leader returns an error wrapping raft.ErrNotLeader, which
// is ignored; to cover events the leader missed (it was a follower then, or
// had no leader yet), every ReconcileInterval all alive members are passed
// to Join and all members that left to Leave again. Handler methods must
// therefore be idempotent (cluster.Log's are).
//
// A node that restarts with the same ID and gossip address rejoins as
// itself, from Config.Join or, with Config.SnapshotPath, from the members
// Serf remembered. A node without the cluster's key cannot join: memberlist drops
// its unencrypted or wrongly encrypted messages.
package membership
