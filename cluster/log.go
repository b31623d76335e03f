package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/logstore"
)

// Server is one member of the Raft configuration, for GetServers.
type Server struct {
	ID       string
	RPCAddr  string // also its Raft address (one TLS port)
	IsLeader bool
}

// Log is a replicated log: appends go through Raft on the leader, reads are
// served from the local store, which holds only committed records. It
// implements service.Log.
type Log struct {
	cfg Config
	// retentionMu guards cfg.Store's retention, which SetRetention
	// changes while the FSM may reopen the store.
	retentionMu sync.Mutex
	logger      *slog.Logger
	raft        *raft.Raft
	trans       *transport
	store       *raftStore // Raft's log and stable store
	logs        *logCache  // in front of store: the latest entries, for raft
	disk        *diskMonitor
	snaps       *snapshotStore
	damage      storeDamage
	fsm         *fsm
	m           *metrics
	tracing     *appendTracing // nil: tracing off
	// leaderWait bounds how long an append waits for an election.
	leaderWait time.Duration

	cur       atomic.Pointer[storeRef]
	replaceMu sync.Mutex // serialises replaceStore (the FSM goroutine and Close)

	done chan struct{} // closed by Close
	// bg runs the snapshot trigger; Close waits for it.
	bg sync.WaitGroup
	// sinceSnapshot counts the bytes of the entries applied since the
	// latest snapshot, for Config.SnapshotBytes.
	sinceSnapshot        atomic.Int64
	entriesSinceSnapshot atomic.Int64
	trailingLogs         uint64 // raft's TrailingLogs as configured: sizeTrailingLogs's ceiling
	// applyMu guards closing; appends hold it for reading while they hand an
	// entry to raft and count its waiter.
	applyMu   sync.RWMutex
	closing   bool
	reloadMu  sync.Mutex // serializes changes of raft's reloadable configuration
	waiters   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// storeRef is the current local store; replaced is closed when a snapshot
// restore installs a newer one.
type storeRef struct {
	log      *logstore.Log
	replaced chan struct{}
}

// applyTimeout bounds queueing an entry when ctx has no deadline.
const applyTimeout = 10 * time.Second

// drainGrace bounds how long Close lets appends under way finish before it
// stops raft (on a healthy cluster they take milliseconds; without a quorum
// they cannot finish), and closeGrace how long it then waits for raft to
// answer the rest.
const (
	drainGrace = time.Second
	closeGrace = 5 * time.Second
)

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// shutdownRaft stops r and waits at most d for its goroutines. A
// replication goroutine that raft wedged (see transport) is released by
// closing its pipeline after pipelineGrace; should anything else hang,
// Close goes on after d rather than hang the process that is stopping.
func shutdownRaft(r *raft.Raft, trans *transport, d time.Duration, logger *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- r.Shutdown().Error() }()
	t := time.NewTimer(d)
	defer t.Stop()
	unwedge := time.NewTimer(min(pipelineGrace, d/2))
	defer unwedge.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("cluster: raft shutdown: %w", err)
			}
			return nil
		case <-unwedge.C:
			if n := trans.closePipelines(); n > 0 {
				logger.Warn("cluster: raft's replication had not stopped; closed its pipelines to release it", "pipelines", n)
			}
		case <-t.C:
			return fmt.Errorf("cluster: raft shutdown: its goroutines did not stop within %v", d)
		}
	}
}

// New opens (or creates) the node's state under cfg.DataDir and starts Raft.
// A node with Bootstrap and no state starts a one-member cluster, or one of
// cfg.Voters.
func New(cfg Config) (_ *Log, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, logger: cfg.Logger, done: make(chan struct{})}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	// The group's transport (transport.go), which closes its stream layer
	// with itself.
	if l.trans, err = openTransport(cfg); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { l.trans.Close() })
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	store, err := l.openStore()
	if err != nil {
		return nil, err
	}
	l.cur.Store(&storeRef{log: store, replaced: make(chan struct{})})
	cleanup = append(cleanup, func() { l.current().log.Close() })

	rcfg := raftStoreConfig(cfg.Store.MaxSegmentBytes, l.logger.With("component", "raft-log"))
	rcfg.Registerer = logRegisterer(cfg.Registerer, raftLog)
	l.store, err = openRaftStoreIn(raftDir, rcfg, cfg.SharedLog, cfg.OwnRaftLog)
	if errors.Is(err, ErrRaftLogCorrupt) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft log: %w", err)
	}
	cleanup = append(cleanup, func() { l.store.Close() })
	watched := []string{cfg.DataDir, raftDir, filepath.Join(cfg.DataDir, "log")}
	if l.store.logDir != filepath.Join(raftDir, raftLogDirName) {
		watched = append(watched, l.store.logDir) // the shared WAL
	}
	l.disk = newDiskMonitor(watched,
		cfg.diskReserve(), cfg.segmentBytes(), l.logger, l.store.recover, cfg.DiskWatch)
	l.store.noSpace = l.disk.noteWriteErr
	if cfg.TracerProvider != nil {
		l.tracing = newAppendTracing(cfg.TracerProvider, cfg.Group, cfg.SpanAttributes)
		l.store.synced = l.tracing.syncs.add
	}
	cleanup = append(cleanup, l.disk.stop)
	snaps, err := openSnapshotStore(raftDir, cfg.RetainSnapshots, l.logger, l.noteDamage)
	if err != nil {
		return nil, err
	}
	l.snaps = snaps
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = newHCLogger(l.logger, "raft")
	// A removed node keeps running (as a non-voter of nothing) so Join can
	// re-add it, e.g. after it moved to a new address.
	rc.ShutdownOnRemove = false
	// BatchApplyCh stays off: futures left in its buffer at shutdown are never
	// answered. The leader loop groups waiting applies into one write anyway.
	setIf(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	setIf(&rc.ElectionTimeout, cfg.ElectionTimeout)
	setIf(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	setIf(&rc.CommitTimeout, cfg.CommitTimeout)
	setIf(&rc.SnapshotThreshold, cfg.SnapshotThreshold)
	setIf(&rc.SnapshotInterval, cfg.SnapshotInterval)
	setIf(&rc.TrailingLogs, cfg.TrailingLogs)
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// raft.NewRaft (and raft.GetConfiguration, in soloVoter) panics on an
	// entry it cannot read: check them first, before anything changes the
	// store (a refusal leaves the data dir as it was, so the records can
	// still be recovered from it).
	if err := l.store.verify(latestSnapshotIndex(snaps) + 1); err != nil {
		return nil, err
	}
	has, err := raft.HasExistingState(l.store, l.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if cfg.Alone {
		solo, err := l.soloVoter(rc, has, cfg.Bootstrap)
		if err != nil {
			return nil, err
		}
		if solo {
			rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = soloTimeout, soloTimeout, soloTimeout/2
		}
	}
	l.leaderWait = 3 * rc.ElectionTimeout
	l.trailingLogs = rc.TrailingLogs
	adoptPath := filepath.Join(raftDir, adoptFileName)
	adopting, err := fileExists(adoptPath)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if _, next := store.Bounds(); !has && next > 0 {
		if !cfg.Bootstrap {
			// Joining, it would receive the cluster's records at the offsets
			// its own records hold.
			return nil, fmt.Errorf("%w: %s holds %d records but there is no raft state in %s; a node joining a cluster starts from an empty data directory",
				ErrExistingStore, filepath.Join(cfg.DataDir, "log"), next, raftDir)
		}
		if len(cfg.Voters) > 1 {
			// Adopting needs this node to lead a cluster of itself; with
			// others the records would clash with theirs.
			return nil, fmt.Errorf("%w: %s holds %d records but there is no raft state in %s; a node bootstrapping with other voters starts from an empty data directory",
				ErrExistingStore, filepath.Join(cfg.DataDir, "log"), next, raftDir)
		}
		// A node that served a log before it ran Raft: its records become
		// the start of the replicated log (adopt, below, once Raft runs).
		// The marker makes a crash before that finishes redo it.
		if err := writeFileSync(adoptPath, fmt.Appendf(nil, "%d\n", next)); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		adopting = true
	}
	if cfg.Bootstrap && !has {
		if err := raft.BootstrapCluster(rc, l.store, l.store, snaps, l.trans, bootConfiguration(cfg, l.trans.LocalAddr())); err != nil {
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	if has && !adopting {
		if err := emptyWithoutSnapshot(store, snaps, l.logger); err != nil {
			return nil, err
		}
	}
	l.fsm = &fsm{c: l, logger: l.logger, w: newStoreWriter(l)}
	_, l.fsm.stored = store.Bounds()
	l.fsm.committed.Store(l.fsm.stored)
	// Raft's goroutines are stopped (or never ran) when cleanup runs, so
	// the FSM's writer is this goroutine's to stop.
	cleanup = append(cleanup, func() { l.fsm.w.close() })
	l.m = newMetrics(l)
	// Recent entries stay in memory: the leader's replication and a
	// follower's apply read them back from there instead of the Raft log store.
	l.logs = newLogCache(l.store, logCacheEntries, logCacheBytes)
	var started atomic.Pointer[raft.Raft]
	l.store.snapshotted = newestApplied(snaps, &started)
	l.raft, err = raft.NewRaft(rc, l.fsm, l.logs, l.store, snaps, l.trans)
	if err == nil {
		r := l.raft
		started.Store(r)
		l.trans.lastResort = func() bool {
			return time.Since(r.LastContact()) > asideGrace*r.ReloadableConfig().ElectionTimeout
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	l.trans.pushCommits(l.raft.CommitIndex)
	if err := l.m.register(cfg.Registerer); err != nil {
		l.raft.Shutdown().Error()
		return nil, err
	}
	if cfg.SnapshotBytes > 0 {
		l.bg.Go(l.snapshotBySize)
	}
	if cfg.SettledTimeout > rc.HeartbeatTimeout && leaseFits(rc.LeaderLeaseTimeout, cfg.SettledTimeout) {
		// (A lone voter's short solo timeouts stay as they are.)
		l.bg.Go(l.settle)
	}
	if adopting {
		if err := l.adopt(adoptPath); err != nil {
			l.Close()
			return nil, err
		}
	}
	l.disk.start()
	return l, nil
}

// bootConfiguration is the configuration a node without Raft state
// bootstraps with: itself alone, or cfg.Voters. hashicorp/raft lets every
// voter bootstrap when all are given the same configuration (api.go,
// BootstrapCluster: "This should only be called at the beginning of time
// for the cluster with an identical configuration listing all Voter
// servers"), so the servers are sorted by ID: a map's order would differ
// from node to node.
func bootConfiguration(cfg Config, self raft.ServerAddress) raft.Configuration {
	if len(cfg.Voters) == 0 {
		return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: self}}}
	}
	var conf raft.Configuration
	for _, id := range slices.Sorted(maps.Keys(cfg.Voters)) {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(cfg.Voters[id])})
	}
	return conf
}

// emptyWithoutSnapshot empties the store of a node that has Raft state
// but no snapshot yet: its Raft log then holds every entry from the first
// (nothing was compacted), and the replay writes every record again, so
// the store holds nothing Raft's log does not vouch for (see doc.go). It
// keeps the store's lowest offset; retention deleted what is below.
func emptyWithoutSnapshot(store *logstore.Log, snaps raft.SnapshotStore, logger *slog.Logger) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	lowest, next := store.Bounds()
	if len(list) > 0 || next == lowest {
		return nil
	}
	logger.Info("cluster: no raft snapshot yet; the store is emptied and raft re-applies its log", "records", next-lowest)
	if err := store.Reset(lowest); err != nil {
		return fmt.Errorf("cluster: empty the store for the replay: %w", err)
	}
	return nil
}

// adoptFileName, in <DataDir>/raft, marks a store being adopted.
const adoptFileName = "adopting"

// adoptTimeout bounds how long adopting waits for this one-member cluster
// to elect itself.
const adoptTimeout = time.Minute

// adopt makes the records the store held before this node ran Raft part of
// the replicated log: Raft restores a snapshot of the store as it is (a user
// restore, which the leader of the new one-member cluster takes as its
// latest snapshot). The FSM keeps the store, since it already holds every
// record the snapshot names, and numbers the next entry's records after
// them; a node that joins later receives them with that snapshot.
func (l *Log) adopt(marker string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
	defer cancel()
	if err := l.WaitForLeader(ctx); err != nil {
		return fmt.Errorf("cluster: adopt the existing store: no leader: %w", err)
	}
	if !l.IsLeader() {
		id, _ := l.Leader()
		return fmt.Errorf("cluster: adopt the existing store: %s leads, not this node", id)
	}
	// A user restore refuses to run while the bootstrap configuration is
	// uncommitted; the barrier waits for it.
	if err := l.raft.Barrier(adoptTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: adopt the existing store: %w", err)
	}
	lg := l.current().log
	if err := lg.Sync(); err != nil {
		return fmt.Errorf("cluster: adopt the existing store: %w", err)
	}
	lowest, next := lg.Bounds()
	if next > 0 { // a redo after a crash restores again, which is harmless
		// Raft checks the snapshot's size: the stream is the store files
		// whole, and nothing appends while New runs.
		n := lg.Stats().SizeBytes
		l.logger.Info("cluster: adopting the records this node held before it ran raft; they are copied once into a raft snapshot",
			"lowest", lowest, "next", next, "bytes", n)
		stream := io.MultiReader(bytes.NewReader(snapHeader{next: next, lowest: lowest, last: lastTime(lg, next)}.encode()), lg.Reader())
		cfg := l.raft.GetConfiguration()
		if err := cfg.Error(); err != nil {
			return fmt.Errorf("cluster: adopt the existing store: %w", err)
		}
		meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Configuration: cfg.Configuration(), Size: snapHeaderSize + n}
		// No timeout: raft copies the whole store into the snapshot, which
		// takes as long as the store is big, and a timer that fired by then
		// would fail the no-op entry raft appends after the restore.
		if err := l.raft.Restore(meta, stream, 0); err != nil {
			return fmt.Errorf("cluster: adopt the existing store: %w", err)
		}
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return syncDir(filepath.Dir(marker))
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// writeFileSync creates path with b, fsynced with its directory.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// openStore opens the local store. A store that fails its checks (after a
// machine crash under SyncNever, pages may reach the disk out of order) is
// moved aside and started empty: Raft rebuilds it from the latest snapshot
// and the entries after it, which are durable in the Raft log.
func (l *Log) openStore() (*logstore.Log, error) {
	dir := filepath.Join(l.cfg.DataDir, "log")
	l.retentionMu.Lock()
	storeCfg := l.cfg.Store
	l.retentionMu.Unlock()
	store, err := logstore.Open(dir, storeCfg)
	if err == nil || !errors.Is(err, logstore.ErrCorrupt) {
		if err != nil {
			return nil, fmt.Errorf("cluster: open store: %w", err)
		}
		return store, nil
	}
	aside := fmt.Sprintf("%s.corrupt-%d", dir, time.Now().UnixNano())
	l.logger.Error("cluster: local store is damaged; moving it aside and rebuilding it from raft", "err", err, "moved_to", aside)
	if err := os.Rename(dir, aside); err != nil {
		return nil, fmt.Errorf("cluster: move damaged store aside: %w", err)
	}
	store, err = logstore.Open(dir, storeCfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: open store: %w", err)
	}
	return store, nil
}

// SetRetention changes the store's retention (a topic's settings changed):
// at once on the open store, and on any store that replaces it later.
// Every node's store decides by the records' replicated times, so they cut
// alike.
func (l *Log) SetRetention(bytes int64, age time.Duration) error {
	l.retentionMu.Lock()
	defer l.retentionMu.Unlock()
	l.cfg.Store.RetentionBytes, l.cfg.Store.RetentionAge = bytes, age
	return l.current().log.SetRetention(bytes, age)
}

func (l *Log) current() *storeRef { return l.cur.Load() }

// replaceStore closes the local store, lets fill rewrite its directory
// (nil: just reopen it, as the store writer does after a failed write) and
// opens it again. Readers of the old store see ErrClosed and move on to
// the new one (Wait does so by itself).
func (l *Log) replaceStore(fill func(dir string) error) error {
	l.replaceMu.Lock()
	defer l.replaceMu.Unlock()
	select {
	case <-l.done:
		return ErrClosed
	default:
	}
	old := l.current()
	if err := old.log.Close(); err != nil {
		l.logger.Warn("cluster: closing the store before a restore", "err", err)
	}
	dir := filepath.Join(l.cfg.DataDir, "log")
	if fill == nil {
		fill = func(string) error { return nil }
		defer func() { l.logger.Info("cluster: local store reopened") }()
	} else {
		l.m.restores.Inc()
	}
	fillErr := fill(dir)
	store, err := logstore.Open(dir, l.cfg.Store)
	if err != nil {
		return fmt.Errorf("cluster: reopen store after restore: %w", errors.Join(fillErr, err))
	}
	l.cur.Store(&storeRef{log: store, replaced: make(chan struct{})})
	close(old.replaced)
	if fillErr != nil {
		return fmt.Errorf("cluster: restore store: %w", fillErr)
	}
	l.logger.Info("cluster: local store restored from a snapshot", "lowest", first(store.Bounds()), "next", second(store.Bounds()))
	return nil
}

func first(a, _ uint64) uint64  { return a }
func second(_, b uint64) uint64 { return b }

// Append replicates one record and returns its offset.
func (l *Log) Append(ctx context.Context, value []byte) (uint64, error) {
	return l.AppendRecords(ctx, []logstore.Record{{Value: value}})
}

// AppendBatch replicates values as one Raft entry (see AppendRecords).
func (l *Log) AppendBatch(ctx context.Context, values [][]byte) (uint64, error) {
	recs := make([]logstore.Record, len(values))
	for i, v := range values {
		recs[i].Value = v
	}
	return l.AppendRecords(ctx, recs)
}

// AppendRecords replicates recs as one Raft entry; they get consecutive
// offsets, returned as the first, and the time this leader proposes them at
// (their Offset and Time fields are ignored). It returns once a quorum
// stored the entry durably and this node applied it. On a follower it
// returns a *NotLeaderError (ErrNotLeader) without writing anything.
func (l *Log) AppendRecords(ctx context.Context, recs []logstore.Record) (uint64, error) {
	if len(recs) == 0 {
		return 0, errors.New("cluster: AppendRecords needs at least one record")
	}
	limit := l.cfg.maxRecordBytes()
	for i := range recs {
		if size := recs[i].Size(); size > limit {
			return 0, fmt.Errorf("%w: record %d has %d bytes, limit %d", logstore.ErrRecordTooLarge, i, size, limit)
		}
	}
	if err := l.leading(ctx); err != nil {
		return 0, err
	}
	ctx, span := l.tracing.start(ctx, recs)
	resp, index, err := l.proposeIndex(ctx, encodeRecords(l.cfg.Now().UnixNano(), recs))
	l.tracing.end(ctx, span, index, err)
	if err != nil {
		return 0, err
	}
	res, ok := resp.(applyResult)
	if !ok {
		return 0, fmt.Errorf("%w: unexpected apply response %T", ErrUnknownOutcome, resp)
	}
	if res.err != nil {
		// Committed in the cluster, but this node could not apply it.
		return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, res.err)
	}
	return res.base, nil
}

// leading returns nil once this node leads and may append: it waits out an
// election under way (for at most leaderWait), then answers
// *NotLeaderError on a follower, or the disk monitor's refusal.
func (l *Log) leading(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-l.done:
		return ErrClosed
	default:
	}
	if l.raft.State() != raft.Leader {
		// An election may be under way (or the node just started): wait
		// for its outcome instead of failing an append a moment early.
		err := l.awaitLeader(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if l.raft.State() != raft.Leader {
			if err := l.leaderlessDiskFull(); err != nil {
				return err
			}
			return l.notLeader()
		}
	}
	if err := l.disk.check(); err != nil {
		return err
	}
	return nil
}

// propose commits data as one Raft entry and returns the FSM's response.
func (l *Log) propose(ctx context.Context, data []byte) (any, error) {
	resp, _, err := l.proposeIndex(ctx, data)
	return resp, err
}

// proposeIndex is propose that also returns the entry's Raft index, when
// raft answered one. While a leadership transfer is in progress raft
// refuses entries before it logs them; proposeIndex waits the transfer out
// (it ends within an election timeout) and proposes again, so an append
// meets a transfer as a pause, then this leader's answer or, once
// leadership has moved, *NotLeaderError naming the new leader.
func (l *Log) proposeIndex(ctx context.Context, data []byte) (any, uint64, error) {
	for {
		resp, index, err := l.applyOnce(ctx, data)
		if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return resp, index, err
		}
		t := time.NewTimer(transferPoll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, 0, fmt.Errorf("%w: %w: %w", ErrTimeout, err, ctx.Err())
		case <-l.done:
			t.Stop()
			return nil, 0, ErrClosed
		}
	}
}

// transferPoll is how often an append waiting out a leadership transfer
// asks raft again. A transfer to a live follower takes a round trip or
// two; to one that does not answer, an election timeout.
const transferPoll = 5 * time.Millisecond

// applyOnce hands data to raft once and waits for its answer. It returns
// raft.ErrLeadershipTransferInProgress as it is (nothing was logged).
func (l *Log) applyOnce(ctx context.Context, data []byte) (any, uint64, error) {
	timeout := applyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	type outcome struct {
		err   error
		resp  any
		index uint64
	}
	ch := make(chan outcome, 1)
	// applyMu's read lock makes "not closed, so apply and count a waiter"
	// atomic against Close, which waits for counted waiters before it
	// stops raft.
	l.applyMu.RLock()
	if l.closing {
		l.applyMu.RUnlock()
		return nil, 0, ErrClosed
	}
	f := l.raft.Apply(data, timeout)
	l.waiters.Go(func() {
		err := f.Error()
		var (
			resp  any
			index uint64
		)
		if err == nil {
			resp, index = f.Response(), f.Index()
		}
		ch <- outcome{err, resp, index}
	})
	l.applyMu.RUnlock()
	var o outcome
	select {
	case o = <-ch:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
	switch {
	case o.err == nil:
	case errors.Is(o.err, raft.ErrLeadershipTransferInProgress):
		// Refused before raft logged it (raft.go's leaderLoop).
		return nil, 0, o.err
	case errors.Is(o.err, raft.ErrNotLeader):
		return nil, 0, l.notLeaderWhenKnown(ctx)
	case errors.Is(o.err, raft.ErrEnqueueTimeout):
		return nil, 0, ErrTimeout
	case errors.Is(o.err, raft.ErrRaftShutdown):
		// Raft answers this also for entries it had committed but not yet
		// handed to the FSM when it shut down: the record may be in the log.
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrClosed)
	default: // leadership lost, aborted by restore, disk full: it may still commit
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, l.disk.annotate(o.err))
	}
	return o.resp, o.index, nil
}

// notLeaderWhenKnown is notLeader once a leader is known: a leader that
// has just stepped down (a transfer) hears from its successor within an
// election, and naming it lets the caller forward the append. It waits
// as awaitLeader does, then names what it knows.
func (l *Log) notLeaderWhenKnown(ctx context.Context) error {
	_ = l.awaitLeader(ctx)
	return l.notLeader()
}

// awaitLeader returns once a leader is known, waiting for at most
// leaderWait; it returns WaitForLeader's error if none became known.
func (l *Log) awaitLeader(ctx context.Context) error {
	if _, id := l.raft.LeaderWithID(); id != "" {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, l.leaderWait)
	defer cancel()
	return l.WaitForLeader(wctx)
}

func (l *Log) notLeader() error {
	addr, id := l.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// Read returns the committed record at offset from the local store.
func (l *Log) Read(ctx context.Context, offset uint64) (logstore.Record, error) {
	recs, err := l.ReadBatch(ctx, offset, 1, 0, nil)
	if err != nil {
		return logstore.Record{}, err
	}
	return recs[0], nil
}

// ReadBatch reads committed records from the local store (see
// logstore.Log.ReadBatch). A committed record the store writer has not
// written yet is waited for, as is a store being replaced, until ctx ends
// (and for at most writeLagLimit).
func (l *Log) ReadBatch(ctx context.Context, offset uint64, maxRecords, maxBytes int, dst []logstore.Record) ([]logstore.Record, error) {
	recs := dst
	err := l.readStore(ctx, offset, func(store *logstore.Log) (err error) {
		recs, err = store.ReadBatch(ctx, offset, maxRecords, maxBytes, dst)
		return err
	})
	return recs, err
}

// ReadInto is ReadBatch into b, reusing its memory (logstore.Log.ReadInto).
func (l *Log) ReadInto(ctx context.Context, offset uint64, maxRecords, maxBytes int, b *logstore.Batch) error {
	return l.readStore(ctx, offset, func(store *logstore.Log) error {
		return store.ReadInto(ctx, offset, maxRecords, maxBytes, b)
	})
}

// readStore runs read, a read at offset, on the local store, waiting for
// what the store writer has not written yet and for a store being
// replaced.
func (l *Log) readStore(ctx context.Context, offset uint64, read func(*logstore.Log) error) error {
	for range 3 {
		ref := l.current()
		err := read(ref.log)
		if errors.Is(err, logstore.ErrOutOfRange) && l.unwritten(ref, offset) {
			if err := l.awaitWritten(ctx, ref, offset); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, logstore.ErrClosed) {
			l.noteDamage(err)
			return err
		}
		if !l.wasReplaced(ref) && !l.awaitReplaced(ctx, ref) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return l.mapClosed(err)
		}
	}
	return ErrClosed
}

// OffsetForTime returns the offset of the first committed record whose time
// is at or after t, or the next offset if there is none (see
// logstore.Log.OffsetForTime). It first waits for the store writer to write
// what was applied, since the answer may be among those records.
func (l *Log) OffsetForTime(ctx context.Context, t time.Time) (uint64, error) {
	for range 3 {
		ref := l.current()
		if c := l.fsm.committed.Load(); c > 0 && l.unwritten(ref, c-1) {
			if err := l.awaitWritten(ctx, ref, c-1); err != nil {
				return 0, err
			}
		}
		off, err := ref.log.OffsetForTime(ctx, t)
		if !errors.Is(err, logstore.ErrClosed) {
			l.noteDamage(err)
			return off, err
		}
		if !l.wasReplaced(ref) && !l.awaitReplaced(ctx, ref) {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, l.mapClosed(err)
		}
	}
	return 0, ErrClosed
}

// awaitReplaced waits a moment for a closed store to be replaced (the store
// writer reopens it after a failed write; a restore swaps it) and reports
// whether it was.
func (l *Log) awaitReplaced(ctx context.Context, ref *storeRef) bool {
	t := time.NewTimer(writeLagLimit)
	defer t.Stop()
	select {
	case <-ref.replaced:
		return true
	case <-l.done:
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// unwritten reports whether offset, which a read found out of range, is
// committed and applied: the store writer has not written it yet, or had
// not when the read looked (awaitWritten returns at once then).
func (l *Log) unwritten(ref *storeRef, offset uint64) bool {
	lowest, _ := ref.log.Bounds()
	return offset >= lowest && offset < l.fsm.committed.Load()
}

// writeLagLimit bounds how long a read waits for the store writer.
const writeLagLimit = 10 * time.Second

// awaitWritten waits until the store holds offset, which the writer is
// about to write (it is moments behind applying), or until the caller's ctx
// ends.
func (l *Log) awaitWritten(caller context.Context, ref *storeRef, offset uint64) error {
	if err := l.fsm.w.failure(); err != nil {
		return fmt.Errorf("%w: %w", ErrApplyFailed, err)
	}
	ctx, cancel := context.WithTimeout(caller, writeLagLimit)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := ref.log.Wait(ctx, offset)
	switch {
	case err == nil, errors.Is(err, logstore.ErrClosed):
		return nil // read again; a replaced store is followed there
	case caller.Err() != nil:
		return caller.Err()
	case errors.Is(err, context.DeadlineExceeded):
		if werr := l.fsm.w.failure(); werr != nil {
			return fmt.Errorf("%w: %w", ErrApplyFailed, werr)
		}
		if stalled := l.fsm.w.stalled.Load(); stalled != nil {
			return fmt.Errorf("%w: offset %d is committed but the local store cannot write it yet: %w", ErrTimeout, offset, *stalled)
		}
		return fmt.Errorf("%w: offset %d is committed but the local store has not written it in %v", ErrTimeout, offset, writeLagLimit)
	}
	return ErrClosed
}

func (l *Log) wasReplaced(ref *storeRef) bool {
	select {
	case <-ref.replaced:
		return true
	default:
		return false
	}
}

// mapClosed keeps logstore.ErrClosed in the chain and adds ErrClosed.
func (l *Log) mapClosed(err error) error {
	if errors.Is(err, logstore.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Bounds returns the local store's lowest offset and the offset after the
// last committed record applied here (which Read waits for if the store
// has not written it yet).
func (l *Log) Bounds() (lowest, next uint64) {
	lowest, next = l.current().log.Bounds()
	return lowest, max(next, l.fsm.committed.Load())
}

// Stats describes the local store as it is, with Next as Bounds gives it:
// it never waits, so sizes may lag the latest acknowledged append by the
// moment the store writer takes to write it.
func (l *Log) Stats() logstore.Stats {
	s := l.current().log.Stats()
	s.Next = max(s.Next, l.fsm.committed.Load())
	return s
}

// Wait blocks until offset is committed and applied locally, ctx ends or the
// Log closes. It follows the store across snapshot restores.
func (l *Log) Wait(ctx context.Context, offset uint64) error {
	for {
		ref := l.current()
		err := ref.log.Wait(ctx, offset)
		if !errors.Is(err, logstore.ErrClosed) {
			return err
		}
		select {
		case <-ref.replaced:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Servers lists the members of the Raft configuration and who leads.
func (l *Log) Servers() ([]Server, error) {
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	_, leader := l.raft.LeaderWithID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), RPCAddr: string(s.Address), IsLeader: s.ID == leader})
	}
	return out, nil
}

// Join adds a voter (membership calls it for every member it sees). It is
// idempotent; a member that comes back at a new address is removed and
// added again with it. On a follower, or when leadership is lost while the
// change commits, it returns ErrNotLeader (also raft.ErrNotLeader), which
// membership ignores: the leader handles the same event.
func (l *Log) Join(id, addr string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("cluster: join %s: %w", id, err)
	}
	for _, s := range f.Configuration().Servers {
		sameID, sameAddr := s.ID == raft.ServerID(id), s.Address == raft.ServerAddress(addr)
		if sameID && sameAddr {
			return nil
		}
		// Same ID at a new address: remove it and add it again. (AddVoter
		// alone would update the address in place, but hashicorp/raft v1.8.0
		// then races with its own replication goroutine; with
		// ShutdownOnRemove off the node survives the short removal.) Another
		// ID at this address: that node is gone and this one replaced it.
		if sameID || sameAddr {
			if err := l.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return fmt.Errorf("cluster: join %s: remove stale %s: %w", id, s.ID, l.mapRaftErr(err))
			}
		}
	}
	if err := l.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 0).Error(); err != nil {
		return fmt.Errorf("cluster: join %s at %s: %w", id, addr, l.mapRaftErr(err))
	}
	l.logger.Info("cluster: added voter", "id", id, "addr", addr)
	return nil
}

// Leave removes a member from the Raft configuration (on the leader).
func (l *Log) Leave(id string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	if err := l.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
		return fmt.Errorf("cluster: leave %s: %w", id, l.mapRaftErr(err))
	}
	l.logger.Info("cluster: removed server", "id", id)
	return nil
}

// mapRaftErr turns raft's "not the leader" errors into a *NotLeaderError.
// It serves the operations that are safe to redo on the next leader
// (membership changes, barriers, transfers): leadership lost while one of
// them was committing means the same as not leading, and membership on the
// new leader makes the same change again. (Appends map their errors in
// AppendBatch: there lost leadership means the outcome is unknown.)
func (l *Log) mapRaftErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("%w: %w", l.notLeader(), err)
	}
	return err
}

// WaitForLeader blocks until the cluster has a leader this node knows of.
func (l *Log) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := l.raft.LeaderWithID(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return ErrClosed
		case <-t.C:
		}
	}
}

// CatchUp waits until a leader is known and, if this node leads, until it
// has applied every entry of its Raft log (a barrier). The store writer
// runs behind applying, so after a crash a node's store may lack records it
// acknowledged; Raft re-applies them once the node leads again. A node that
// leads a one-member cluster calls this before it serves reads, so it never
// serves less than it acknowledged.
func (l *Log) CatchUp(ctx context.Context) error {
	if err := l.WaitForLeader(ctx); err != nil {
		return err
	}
	if !l.IsLeader() {
		return nil
	}
	timeout := applyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := l.raft.Barrier(timeout).Error(); err != nil {
		return fmt.Errorf("cluster: catch up: %w", l.mapRaftErr(err))
	}
	return nil
}

// IsLeader reports whether this node leads now.
func (l *Log) IsLeader() bool { return l.raft.State() == raft.Leader }

// Leader returns the leader's ID and RPC address ("" when unknown).
func (l *Log) Leader() (id, addr string) {
	a, i := l.raft.LeaderWithID()
	return string(i), string(a)
}

// stepDown hands leadership over, if this node leads, when it cannot apply
// (every append it took would fail here although the others commit and
// apply it) or its store is damaged (noteDamage). It does not wait.
func (l *Log) stepDown() {
	if l.raft == nil || l.raft.State() != raft.Leader {
		return
	}
	l.background(func() {
		if err := l.raft.LeadershipTransfer().Error(); err != nil {
			l.logger.Warn("cluster: hand leadership over (cannot apply, or a damaged store)", "err", err)
		} else {
			l.logger.Info("cluster: handed leadership over: this node cannot apply, or its store is damaged")
		}
	})
}

// standAside keeps a node that cannot apply from standing for election:
// raft may still make it a candidate when it hears from no leader, but its
// pre-vote and vote requests fail here (transport.aside), so no one votes
// for it, and it raises no term that would unseat the leader the others
// elect. Its Raft log is intact, so it still appends entries, counts
// toward the quorum that commits, and votes for others (its vote is as
// safe as any). A restart rebuilds its store from that log. As a last
// resort, once the group has been without a leader for asideGrace
// election timeouts, it stands after all: it may hold the only log among
// the live voters with every committed entry, so no other can be elected;
// elected, it hands leadership to a follower it has caught up (stepDown).
// A leadership transfer aimed at it (raft's TimeoutNow) may also elect
// it; it then hands leadership over again.
func (l *Log) standAside() {
	if l.trans == nil || l.trans.aside.Swap(true) {
		return
	}
	l.logger.Warn("cluster: this node cannot apply, so it no longer stands for election (it still votes and replicates); restart it to rebuild its store from the Raft log")
	// Elected anyway (the last resort, or a transfer aimed at it), it
	// hands leadership over as soon as it can: raft's transfer first
	// catches the most up-to-date follower up.
	l.background(func() {
		t := time.NewTicker(l.raft.ReloadableConfig().HeartbeatTimeout)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
			}
			if l.raft.State() != raft.Leader {
				continue
			}
			if err := l.raft.LeadershipTransfer().Error(); err != nil {
				l.logger.Warn("cluster: hand leadership over (this node cannot apply)", "err", err)
			} else {
				l.logger.Info("cluster: handed leadership over: this node cannot apply")
			}
		}
	})
}

// asideGrace is how many election timeouts without a leader a node that
// cannot apply waits before it stands for election as a last resort.
const asideGrace = 5

// background runs f in bg, which Close waits for, unless Close has begun:
// once closing is set nothing may join bg. It reports whether f runs.
func (l *Log) background(f func()) bool {
	l.applyMu.RLock()
	defer l.applyMu.RUnlock()
	if l.closing {
		return false
	}
	l.bg.Go(f)
	return true
}

// TransferLeadership hands leadership to the most up-to-date follower, for
// a graceful shutdown: writes pause for one round trip instead of an
// election timeout. On a follower it returns ErrNotLeader.
func (l *Log) TransferLeadership() error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	if err := l.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("cluster: transfer leadership: %w", l.mapRaftErr(err))
	}
	return nil
}

// TransferLeadershipTo hands leadership to the voter id (a partition's
// preferred leader). Raft first brings id up to date; while it does, this
// leader refuses appends, for at most an election timeout when id does not
// answer.
func (l *Log) TransferLeadershipTo(id string) error {
	if l.raft.State() != raft.Leader {
		return l.notLeader()
	}
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			if err := l.raft.LeadershipTransferToServer(s.ID, s.Address).Error(); err != nil {
				return fmt.Errorf("cluster: transfer leadership to %s: %w", id, l.mapRaftErr(err))
			}
			return nil
		}
	}
	return fmt.Errorf("cluster: transfer leadership: %s is not a voter", id)
}

// Snapshot makes Raft take a snapshot now (and compact its log).
func (l *Log) Snapshot() error {
	if err := l.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return nil
}

// Close stops Raft (without handing leadership over: to others it looks like
// a crash, and they elect a new leader), closes the stream layer (a named
// group's only its group), the Raft log and the local store.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.applyMu.Lock()
		l.closing = true
		l.applyMu.Unlock()
		l.m.unregister()
		l.disk.stop()
		var errs []error
		// hashicorp/raft never answers the futures of entries that wait for
		// the FSM when it shuts down, so let the appends under way finish
		// first (committed and applied, or failed); raft answers the rest,
		// which it has not committed, with ErrLeadershipLost on shutdown.
		drained := waitGroupTimeout(&l.waiters, drainGrace)
		if err := shutdownRaft(l.raft, l.trans, closeGrace, l.logger); err != nil {
			l.logger.Error("cluster: raft did not stop; closing the rest anyway", "err", err)
			errs = append(errs, err)
		}
		l.trans.Close() // closes the stream layer (or the group's) too
		l.bg.Wait()
		if !drained && !waitGroupTimeout(&l.waiters, closeGrace) {
			l.logger.Error("cluster: some appends were never answered by raft after shutdown", "waited", drainGrace+closeGrace)
		}
		// Raft's FSM goroutine has stopped: write what it handed over.
		l.fsm.w.close()
		if err := l.fsm.w.failure(); err != nil {
			errs = append(errs, err)
		}
		if err := l.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close raft log: %w", err))
		}
		l.replaceMu.Lock()
		if err := l.current().log.Close(); err != nil {
			errs = append(errs, err)
		}
		l.replaceMu.Unlock()
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// newestApplied gives the index and term of the newest snapshot in snaps
// once the Raft in started has applied up to it (raftStore.snapshotted).
// Raft's applied index reaches a snapshot once it restored or took it; one
// whose restore failed is on disk too, and Raft still needs the entries
// below it.
func newestApplied(snaps raft.SnapshotStore, started *atomic.Pointer[raft.Raft]) func() (uint64, uint64, bool) {
	return func() (uint64, uint64, bool) {
		r := started.Load()
		if r == nil {
			return 0, 0, false
		}
		metas, err := snaps.List()
		if err != nil || len(metas) == 0 || metas[0].Index > r.AppliedIndex() {
			return 0, 0, false
		}
		return metas[0].Index, metas[0].Term, true
	}
}
