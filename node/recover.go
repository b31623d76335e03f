package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/internal/atomicfile"
	"github.com/proglog/proglog/service"
)

// peersFile lists the system group's members as this node last saw them,
// one "id rpc-addr" line each. It lives beside raft/, not in it, so a node
// whose Raft log is damaged still knows whom to ask (recoverFromPeers).
const peersFile = "peers"

// peer is one line of peersFile.
type peer struct{ id, addr string }

// savePeers writes the system group's members to peersFile when they
// differ from last, and returns what it wrote (or last, on error).
func (m *member) savePeers(last []peer) []peer {
	members, err := m.log.Members()
	if err != nil || len(members) == 0 {
		return last
	}
	var peers []peer
	for _, mem := range members {
		peers = append(peers, peer{mem.ID, mem.Addr})
	}
	slices.SortFunc(peers, func(a, b peer) int { return strings.Compare(a.id, b.id) })
	if slices.Equal(peers, last) {
		return last
	}
	var b bytes.Buffer
	b.WriteString("# the cluster's members as this node last saw them: serve --recover-from-peers asks them\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "%s %s\n", p.id, p.addr)
	}
	if err := atomicfile.Write(filepath.Join(m.dataDir, peersFile), b.Bytes(), 0o600, true); err != nil {
		m.logger.Warn("saving the cluster's members for --recover-from-peers", "err", err)
		return last
	}
	return peers
}

func loadPeers(dataDir string) ([]peer, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, peersFile))
	if err != nil {
		return nil, err
	}
	var peers []peer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, addr, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%s: bad line %q", peersFile, line)
		}
		peers = append(peers, peer{id, strings.TrimSpace(addr)})
	}
	return peers, sc.Err()
}

// recoverTimeout bounds how long recoverFromPeers keeps asking the
// cluster to remove this node's old membership.
const recoverTimeout = 5 * time.Minute

// recoverFromPeers does what raftLogCorruptAdvice tells an operator, but
// keeps the node's ID: it has the cluster's leader remove this node's old
// membership (RemoveNode, as a peer: the node's own certificate), so that
// the node, which no longer holds the entries it voted on, never votes as
// that member again; only then it moves raft/, log/ and serf.snapshot
// aside (to <name>.broken-<time>). It returns once both are done; the node
// then starts as a new member and joins through --join, catching up from
// its peers (a snapshot, then entries). Partitions keep their own Raft
// state and rejoin their groups as before. The peers to ask are the
// members this node last saw (peersFile). On failure nothing was moved
// (unless moving itself failed) and the error carries the advice.
func (m *member) recoverFromPeers(fwd *service.Forwarder, cause error) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w; --recover-from-peers: %s", raftLogCorruptAdvice(cause, m.dataDir), fmt.Sprintf(format, args...))
	}
	if len(m.cfg.Join) == 0 {
		return refuse("needs --join (a live member's gossip address) to rejoin the cluster once its peers have removed its old membership")
	}
	peers, err := loadPeers(m.dataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return refuse("could not read the members this node last saw: %v", err)
	}
	var addrs []string
	for _, p := range peers {
		if p.id != m.id && p.addr != m.advertise {
			addrs = append(addrs, p.addr)
		}
	}
	if len(addrs) == 0 {
		return refuse("found no other member in %s to ask (the node never saw one, or ran a version before this flag): follow the advice above by hand",
			filepath.Join(m.dataDir, peersFile))
	}
	m.logger.Warn("--recover-from-peers: this node's Raft log is damaged; asking the cluster to remove its old membership, then rejoining from the peers",
		"damage", cause.Error(), "peers", addrs)
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	if err := m.removeOldSelf(ctx, fwd, addrs); err != nil {
		return refuse("the cluster did not remove this node's old membership within %v (last answer: %v); nothing was moved", recoverTimeout, err)
	}
	suffix := ".broken-" + time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{"raft", "log", "serf.snapshot"} {
		p := filepath.Join(m.dataDir, name)
		if err := os.Rename(p, p+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--recover-from-peers: the cluster removed this node's old membership, but moving its damaged state aside failed (start again with the flag to retry): %w", err)
		}
	}
	m.logger.Warn("--recover-from-peers: moved the damaged Raft state and the records aside; starting as a new member", "moved_to", "<name>"+suffix)
	m.restarted = false // a new member now
	return nil
}

// removeOldSelf asks addrs in turn to remove this node from the cluster
// until one (the leader, or a follower that forwards to it) succeeds. The
// leader refuses while gossip still sees this node alive (its previous
// process only just died) and while the other voters lack a live majority:
// both pass with time, so it retries until ctx ends.
func (m *member) removeOldSelf(ctx context.Context, fwd *service.Forwarder, addrs []string) error {
	var last error
	logged := time.Time{}
	for attempt := 0; ; attempt++ {
		addr := addrs[attempt%len(addrs)]
		c, _ := fwd.Client(addr)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.RemoveNode(cctx, &logv1.RemoveNodeRequest{NodeId: m.id})
		cancel()
		switch {
		case err == nil:
			m.logger.Info("--recover-from-peers: the cluster removed this node's old membership", "via", addr)
			return nil
		case connect.CodeOf(err) == connect.CodeNotFound:
			m.logger.Info("--recover-from-peers: the cluster no longer lists this node", "via", addr)
			return nil
		}
		last = fmt.Errorf("%s: %w", addr, err)
		if time.Since(logged) > 10*time.Second {
			m.logger.Info("--recover-from-peers: waiting for the cluster to remove this node's old membership", "last", last.Error())
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(500 * time.Millisecond):
		}
	}
}
