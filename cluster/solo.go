package cluster

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// soloTimeout is the heartbeat and election timeout of a node that is its
// cluster's only voter and will stay so (Config.Alone): there is no one to
// hear from, so waiting longer only delays its election, and no one whose
// election it could disturb.
const soloTimeout = 50 * time.Millisecond

// soloVoter reports whether the Raft configuration holds this node alone.
// A fresh bootstrap does, unless it names other Voters; otherwise the configuration is read the way raft
// reads it at start (the latest snapshot's, then the configuration entries
// after it), without restoring anything.
func (l *Log) soloVoter(rc *raft.Config, has, bootstrap bool) (bool, error) {
	if !has {
		return bootstrap && len(l.cfg.Voters) <= 1, nil
	}
	probe := *rc
	probe.NoSnapshotRestoreOnStart = true
	probe.Logger = newHCLogger(l.logger, "raft-probe")
	conf, err := raft.GetConfiguration(&probe, nopFSM{}, l.store, l.store, l.snaps, l.trans)
	if err != nil {
		return false, fmt.Errorf("cluster: read the raft configuration: %w", err)
	}
	servers := conf.Servers
	return len(servers) == 1 && servers[0].ID == rc.LocalID && servers[0].Suffrage == raft.Voter, nil
}

// nopFSM stands in for the FSM while soloVoter reads the configuration.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, fmt.Errorf("cluster: no snapshots here")
}
func (nopFSM) Restore(rc io.ReadCloser) error { return rc.Close() }
