package cluster

import "time"

// BreakStore closes the node's local store under the store writer, the
// way a failing disk would make its writes fail.
func BreakStore(l *Log) error { return l.current().log.Close() }

// HeartbeatTimeout is the heartbeat timeout raft runs with.
func HeartbeatTimeout(l *Log) time.Duration { return l.raft.ReloadableConfig().HeartbeatTimeout }
