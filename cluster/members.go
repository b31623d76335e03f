package cluster

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Voters lists the voters of the Raft configuration, node ID to RPC (and
// Raft) address, as the leader sees it (the latest configuration, committed
// or not). On a follower it returns ErrNotLeader (also raft.ErrNotLeader):
// membership asks it first and acts only on the leader, which alone can
// change the configuration.
func (l *Log) Voters() (map[string]string, error) {
	if l.raft.State() != raft.Leader {
		return nil, l.notLeader()
	}
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: voters: %w", err)
	}
	out := map[string]string{}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out[string(s.ID)] = string(s.Address)
		}
	}
	return out, nil
}

// RemoveFailed removes the voter id, which membership found failed for
// longer than it allows, once a quorum of the current configuration has
// answered this leader (raft's VerifyLeader): id being down, those voters
// are a majority of the configuration without id, so the removal commits
// and leaves a cluster that can commit. Otherwise it removes nothing and
// returns the error (ErrNotLeader once leadership is lost).
func (l *Log) RemoveFailed(id string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	if err := l.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("cluster: remove failed %s: no quorum answers: %w", id, l.mapRaftErr(err))
	}
	return l.Leave(id)
}
