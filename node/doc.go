// Package node assembles a proglog node from its parts and runs it: the
// one TLS port (service), the ACL (acl), the log (a Raft-replicated
// cluster.Log, or a standalone logstore.Log without TLS), gossip
// (membership), the TLS identity, reloaded as its files change, and the
// quickstart's development identity (pki). proglog serve turns its flags
// into a Config and calls New, then Run.
//
// # Start-up
//
// New opens the parts in the order they depend on each other (see New)
// and refuses, before it changes anything, a Config that does not fit the
// data dir: Raft state served Insecure, Join on a node that runs a cluster
// of its own, Bootstrap and Join on a first start (ErrConfig), or a
// damaged Raft log (cluster.ErrRaftLogCorrupt, with what to do). Run then
// starts the long-lived parts as actors of one github.com/oklog/run group:
// when one ends, the group stops all of them in one fixed order, so a
// failing part stops the others and every part has one owner that stops
// it (see Run for the list and the order).
//
// # Repairs of the data dir
//
// A first start that fails leaves no Raft state: when a joining node's
// store already holds records, or its join reaches nobody, New or Run
// removes the raft/ it had just made, so the next start is a first start
// again. Nothing else is ever removed.
//
// # Messages
//
// The errors and log lines an operator acts on name proglog serve's flags
// (--join, --node-id, --insecure), since that is how operators set the
// fields; errors that only a caller of this package can cause (a Config
// proglog serve never builds) name the fields.
package node
