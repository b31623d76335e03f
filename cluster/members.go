package cluster

import (
	"fmt"
	"slices"

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
	members, err := l.Members()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range members {
		if m.Voter {
			out[m.ID] = m.Addr
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

// Member is one server of the Raft configuration.
type Member struct {
	ID, Addr string
	Voter    bool // false for a learner (raft's nonvoter)
}

// Members lists the latest Raft configuration as this node knows it
// (committed or not); it works on followers too.
func (l *Log) Members() ([]Member, error) {
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: members: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// VoterIDs returns the node IDs of the voters among members, sorted.
func VoterIDs(members []Member) []string {
	var ids []string
	for _, m := range members {
		if m.Voter {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// AddLearner adds id as a learner (raft's nonvoter): the leader sends it
// the log, or a snapshot, but it does not count toward a quorum, so
// catching a new replica up never stalls commits. A server already in the
// configuration is left as it is.
func (l *Log) AddLearner(id, addr string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	if m, err := l.member(id); err != nil || m != nil {
		return err
	}
	if err := l.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 0).Error(); err != nil {
		return fmt.Errorf("cluster: add learner %s at %s: %w", id, addr, l.mapRaftErr(err))
	}
	l.logger.Info("cluster: added learner", "id", id, "addr", addr)
	return nil
}

// Promote makes id a voter: a learner is promoted, an unknown server is
// added as a voter, a voter is left as it is.
func (l *Log) Promote(id, addr string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	if m, err := l.member(id); err != nil || m != nil && m.Voter {
		return err
	}
	if err := l.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 0).Error(); err != nil {
		return fmt.Errorf("cluster: promote %s: %w", id, l.mapRaftErr(err))
	}
	l.logger.Info("cluster: promoted to voter", "id", id, "addr", addr)
	return nil
}

// member returns id's entry in the configuration, or nil.
func (l *Log) member(id string) (*Member, error) {
	members, err := l.Members()
	if err != nil {
		return nil, err
	}
	for i := range members {
		if members[i].ID == id {
			return &members[i], nil
		}
	}
	return nil, nil
}
