//go:build slow && chaos

package main_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// The chaos soak (make chaos): a three-node cluster of real processes under
// a continuous produce load, hit round after round by one fault chosen at
// random, and checked after every round. It runs for minutes and is not part
// of CI (build tag chaos). Configured by the environment:
//
//	CHAOS_DURATION  how long to start new rounds (default 5m)
//	CHAOS_ROUNDS    stop after this many rounds (default 0: no limit)
//	CHAOS_SEED      the random seed (default: the clock; printed to replay a run)
//	CHAOS_FAULTS    a comma-separated subset of the fault kinds below
//	CHAOS_LOOPBACK  1: run on loopback even where namespaces are available
//
// The fault kinds:
//
//	kill9           kill -9 a random node (leader or follower), restart it
//	sigstop         SIGSTOP a random node for 2-5 s, then SIGCONT
//	partition       cut a random node's network link for 2-6 s (namespaces)
//	diskfull        fill the tmpfs holding n3's data dir for 3 s, free it;
//	                expected to catch up within 10 s and then apply new
//	                writes (else a finding, and it is restarted)
//	flip-store-new  kill -9 a follower, flip a byte of a record in a sealed
//	                store segment at or past its latest Raft snapshot's next
//	                offset, restart: expected to heal (the store is cut back
//	                to the snapshot and rebuilt from Raft's log)
//	flip-store-old  the same in a segment below it (one the snapshot links,
//	                or a copy restored from a snapshot received): expected to
//	                read as DataLoss for exactly that record on that node,
//	                while the others serve it, until the node's store is
//	                replaced by a snapshot from a peer (then it must serve
//	                the others' value)
//	raft-tail       kill -9 a follower, cut 1-7 bytes off the end of its
//	                newest Raft log segment (a torn write; in a segment that
//	                holds only its header, a torn header), restart
//	flip-raft       kill -9 a follower that joined (n2 or n3), flip a byte in
//	                the middle of its newest sealed Raft log segment,
//	                restart: every node runs with --recover-from-peers, so
//	                it is expected to have the leader remove its old
//	                membership, move its Raft state aside and rejoin under
//	                the same ID, catching up from its peers (or, when the
//	                flip landed in entries a snapshot already covers, start
//	                as usual)
//
// After each round, with the producer paused: one agreed leader among the
// three nodes, every node applied the same records, every node holds every
// record identically (except the records known to read DataLoss, which
// must), every acknowledged record is in the log at its offset, no record
// is there twice or was never sent; then the producer resumes and the
// cluster must acknowledge 20 more writes.
//
// Partitions need network namespaces and disk-full a mount namespace
// (root, iproute2, nsenter, unshare); where the machine has none the soak
// runs on loopback without those two kinds and says so.

const (
	faultKill9     = "kill9"
	faultSigstop   = "sigstop"
	faultPartition = "partition"
	faultDiskFull  = "diskfull"
	faultFlipNew   = "flip-store-new"
	faultFlipOld   = "flip-store-old"
	faultRaftTail  = "raft-tail"
	faultFlipRaft  = "flip-raft"
)

var allFaults = []string{faultKill9, faultSigstop, faultPartition, faultDiskFull, faultFlipNew, faultFlipOld, faultRaftTail, faultFlipRaft}

// chaosFlags make snapshots and sealed segments frequent, so byte flips
// find segments on both sides of the latest snapshot, and keep few Raft
// entries behind a snapshot, so a node that was down a few seconds may
// need a whole snapshot (InstallSnapshot) to catch up.
var chaosFlags = []string{"--segment-bytes", "16KiB", "--raft-snapshot-threshold", "1024",
	"--raft-snapshot-interval", "5s", "--raft-trailing-logs", "1024", "--recover-from-peers"}

func TestChaosSoak(t *testing.T) {
	cfg := chaosConfigFromEnv(t)
	s := &soak{t: t, rng: rand.New(rand.NewSource(cfg.seed)), damaged: map[*member]map[uint64]bool{},
		rounds: map[string]int{}, started: time.Now()}
	s.logf("seed %d (CHAOS_SEED=%d replays this run's choices), duration %v, rounds %d (0: no limit)",
		cfg.seed, cfg.seed, cfg.duration, cfg.rounds)

	const nodes = 3
	kinds := slices.Clone(cfg.faults)
	reason := netnsUnavailable()
	if os.Getenv("CHAOS_LOOPBACK") == "1" {
		reason = "CHAOS_LOOPBACK=1"
	}
	if reason != "" {
		s.omit(&kinds, faultPartition, "no network namespaces: "+reason)
		s.omit(&kinds, faultDiskFull, "the loopback cluster cannot run a node in a mount namespace")
		s.c = startCluster(t, chaosFlags...)
	} else {
		s.nn = newNetns(t, nodes)
		var diskErr error
		wrap := func(i int, dataDir string) []string {
			if i != nodes || !slices.Contains(kinds, faultDiskFull) {
				return nil
			}
			if s.disk, diskErr = mountTmpfs(t, dataDir, "64m"); diskErr != nil {
				return nil
			}
			return []string{"nsenter", "-t", strconv.Itoa(s.disk.pid), "-m", "--"}
		}
		s.c = startNetnsCluster(t, s.nn, nodes, wrap, chaosFlags...).testCluster
		if s.disk == nil {
			s.omit(&kinds, faultDiskFull, fmt.Sprintf("no tmpfs in a mount namespace: %v", diskErr))
		} else {
			s.logf("n3's data dir is a 64 MiB tmpfs in a mount namespace (holder pid %d)", s.disk.pid)
		}
	}
	if len(kinds) == 0 {
		t.Fatal("no fault kind left to run")
	}
	s.logf("fault kinds: %s", strings.Join(kinds, ", "))

	t.Cleanup(s.summary)
	s.p = &producer{c: s.c, sent: map[string]bool{}}
	for _, m := range s.c.members {
		s.p.addrs = append(s.p.addrs, m.addr)
	}
	s.resume()
	t.Cleanup(s.pause)
	s.p.waitProgress(t, 100)

	for round := 1; (cfg.rounds == 0 || round <= cfg.rounds) && time.Since(s.started) < cfg.duration; round++ {
		kind := kinds[s.rng.Intn(len(kinds))]
		s.round, s.kind = round, kind
		leader := s.c.waitLeader(nodes)
		acked := s.p.acked()
		t0 := time.Now()
		what := s.inject(kind, leader)
		s.logf("round %d %s: %s; %d writes acknowledged meanwhile (%v)", round, kind, what,
			s.p.acked()-acked, time.Since(t0).Round(time.Millisecond))
		s.check()
		s.rounds[kind]++
		s.kind = ""
	}
}

type chaosConfig struct {
	seed     int64
	rounds   int
	duration time.Duration
	faults   []string
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	cfg := chaosConfig{seed: time.Now().UnixNano() % 1_000_000_000, duration: 5 * time.Minute, faults: allFaults}
	var err error
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		if cfg.seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
	}
	if v := os.Getenv("CHAOS_ROUNDS"); v != "" {
		if cfg.rounds, err = strconv.Atoi(v); err != nil {
			t.Fatalf("CHAOS_ROUNDS: %v", err)
		}
	}
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		if cfg.duration, err = time.ParseDuration(v); err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
	}
	if v := os.Getenv("CHAOS_FAULTS"); v != "" {
		cfg.faults = strings.Split(v, ",")
		for _, f := range cfg.faults {
			if !slices.Contains(allFaults, f) {
				t.Fatalf("CHAOS_FAULTS: unknown fault %q (known: %s)", f, strings.Join(allFaults, ","))
			}
		}
	}
	return cfg
}

// soak is one run of the chaos soak.
type soak struct {
	t       *testing.T
	c       *testCluster
	nn      *netns      // nil on loopback
	disk    *tmpfsMount // n3's data dir; nil without disk-full
	rng     *rand.Rand
	p       *producer
	stop    func() // stops the producer; nil while it is paused
	started time.Time

	round   int
	kind    string         // the round's fault while it runs or is checked
	rounds  map[string]int // rounds completed (checked) per fault kind
	omitted []string       // fault kinds left out, with the reason
	// damaged holds, per node, the records a flip in a segment below the
	// latest snapshot made unreadable there: they must read DataLoss.
	damaged       map[*member]map[uint64]bool
	findings      []string // what did not go as the README promises
	healedRecords int      // damaged records a node served again later
	checked       int      // acknowledged records checked in the latest round
	next          uint64   // records in the log at the latest check
}

func (s *soak) logf(format string, args ...any) {
	fmt.Printf("%s chaos: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// finding records behaviour that differs from what the README promises
// but lets the soak go on.
func (s *soak) finding(format string, args ...any) {
	f := fmt.Sprintf("round %d %s: %s", s.round, s.kind, fmt.Sprintf(format, args...))
	s.findings = append(s.findings, f)
	s.logf("FINDING %s", f)
}

func (s *soak) omit(kinds *[]string, kind, why string) {
	if i := slices.Index(*kinds, kind); i >= 0 {
		*kinds = slices.Delete(*kinds, i, i+1)
		s.omitted = append(s.omitted, kind+": "+why)
		s.logf("leaving out %s: %s", kind, why)
	}
}

func (s *soak) summary() {
	total := 0
	var per []string
	for _, k := range allFaults {
		if n := s.rounds[k]; n > 0 {
			per = append(per, fmt.Sprintf("%s %d", k, n))
			total += n
		}
	}
	s.logf("SUMMARY after %v: %d rounds checked (%s)", time.Since(s.started).Round(time.Second), total, strings.Join(per, ", "))
	if s.p != nil {
		s.p.mu.Lock()
		s.logf("SUMMARY %d writes acknowledged, %d failed attempts; the last check read %d records on every node and found all %d acknowledged before it",
			len(s.p.acks), s.p.errs, s.next, s.checked)
		s.p.mu.Unlock()
	}
	for _, o := range s.omitted {
		s.logf("SUMMARY left out %s", o)
	}
	for m, offs := range s.damaged {
		s.logf("SUMMARY %s reads DataLoss, as expected, for %d records (old-segment flips): %v", m.id, len(offs), slices.Sorted(maps.Keys(offs)))
	}
	if s.healedRecords > 0 {
		s.logf("SUMMARY %d damaged records were served again later, identical to the other nodes' (healed by a snapshot from a peer)", s.healedRecords)
	}
	for _, f := range s.findings {
		s.logf("SUMMARY finding: %s", f)
	}
	if s.t.Failed() {
		s.logf("SUMMARY FAILED in round %d (%s); replay with CHAOS_SEED and the same CHAOS_FAULTS", s.round, s.kind)
	} else {
		s.logf("SUMMARY every check held")
	}
}

func (s *soak) pick(ms []*member) *member { return ms[s.rng.Intn(len(ms))] }

func (s *soak) sleep(lo, hi time.Duration) time.Duration {
	d := lo + time.Duration(s.rng.Int63n(int64(hi-lo)))
	time.Sleep(d)
	return d
}

func role(m, leader *member) string {
	if m == leader {
		return m.id + " (leader)"
	}
	return m.id + " (follower)"
}

// inject runs one fault and brings the cluster back to three running,
// connected nodes; it returns what it did.
func (s *soak) inject(kind string, leader *member) string {
	t, c := s.t, s.c
	switch kind {
	case faultKill9:
		m := s.pick(c.members)
		m.kill9()
		down := s.sleep(500*time.Millisecond, 3*time.Second)
		start := time.Now()
		m.start()
		c.waitReady(m)
		return fmt.Sprintf("kill -9 %s, down %v, serving %v after restart", role(m, leader),
			down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	case faultSigstop:
		m := s.pick(c.members)
		m.signal(syscall.SIGSTOP)
		d := s.sleep(2*time.Second, 5*time.Second)
		m.signal(syscall.SIGCONT)
		return fmt.Sprintf("SIGSTOP %s for %v", role(m, leader), d.Round(time.Millisecond))
	case faultPartition:
		i := s.rng.Intn(len(c.members))
		m := c.members[i]
		s.nn.cut(i+1, true)
		d := s.sleep(2*time.Second, 6*time.Second)
		s.nn.cut(i+1, false)
		return fmt.Sprintf("cut %s off for %v", role(m, leader), d.Round(time.Millisecond))
	case faultDiskFull:
		return s.diskFull(leader)
	case faultFlipNew, faultFlipOld:
		return s.flipStore(leader, kind == faultFlipOld)
	case faultRaftTail:
		m := s.pick(c.followers(leader))
		m.kill9()
		seg := newestSegment(t, filepath.Join(s.dataDir(m), "raft", "log"))
		fi, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		cut := int64(1 + s.rng.Intn(7))
		what := fmt.Sprintf("kill -9 %s, cut %d bytes off %s (%d bytes)", role(m, leader), cut, filepath.Base(seg), fi.Size())
		if fi.Size() <= 32 {
			// Only its header (the segment just rolled): the cut leaves a
			// header cut short, which Open must rewrite (finding 3 in
			// docs/reliability.md).
			what += ", only its header"
		}
		if err := os.Truncate(seg, max(0, fi.Size()-cut)); err != nil {
			t.Fatal(err)
		}
		s.logf("round %d %s: %s; restarting", s.round, s.kind, what)
		m.start()
		c.waitReady(m)
		return what + ", restarted"
	case faultFlipRaft:
		var joined []*member // n1 bootstrapped: no --join, which the recovery needs
		for _, m := range c.followers(leader) {
			if m.id != "n1" {
				joined = append(joined, m)
			}
		}
		m := s.pick(joined)
		m.kill9()
		segs := segmentFiles(t, filepath.Join(s.dataDir(m), "raft", "log"))
		if len(segs) < 2 {
			m.start()
			c.waitReady(m)
			return fmt.Sprintf("kill -9 %s; no sealed Raft log segment to flip, restarted", role(m, leader))
		}
		seg := segs[len(segs)-2]
		at := flipMiddle(t, seg, 0x20)
		what := fmt.Sprintf("kill -9 %s, flipped byte %d of %s", role(m, leader), at, filepath.Base(seg))
		s.logf("round %d %s: %s; restarting with --recover-from-peers", s.round, s.kind, what)
		before := m.out.String()
		start := time.Now()
		m.start()
		waitFor(t, m.id+" to recover from its peers", 5*time.Minute, func() bool {
			if !m.running() {
				t.Fatalf("%s exited: %v", m.id, m.current.err)
			}
			ctx, cancel := c.call(time.Second)
			defer cancel()
			_, err := c.client(m.addr).GetStats(ctx, &logv1.GetStatsRequest{})
			return err == nil
		})
		if strings.Contains(m.out.String()[len(before):], "moved the damaged Raft state") {
			delete(s.damaged, m) // a new store, rebuilt from the peers
			return what + fmt.Sprintf(", recovered from the peers under the same ID in %v", time.Since(start).Round(time.Millisecond))
		}
		return what + ", restarted (the damage was not in entries the start reads)"
	}
	t.Fatalf("unknown fault %q", kind)
	return ""
}

// dataDir is m's --data-dir as this process sees it (n3's through the
// mount namespace that holds its tmpfs).
func (s *soak) dataDir(m *member) string {
	i := slices.Index(m.args, "--data-dir")
	dir := m.args[i+1]
	if s.disk != nil && s.disk.dir == dir {
		return s.disk.path(dir)
	}
	return dir
}

// diskFull fills n3's tmpfs while the load goes on, frees it, and expects
// n3 to catch up by itself; if it does not (or it exited), that is a
// finding and it is restarted.
func (s *soak) diskFull(leader *member) string {
	t, c := s.t, s.c
	m := c.members[len(c.members)-1]
	ballast := filepath.Join(s.disk.path(s.disk.dir), "chaos-ballast")
	filled := fillDisk(t, ballast)
	held := time.Now()
	// A write through the full node, to see what a client is told.
	probeErr := s.probe(m, fmt.Sprintf("diskfull-probe-%d", s.round))
	time.Sleep(time.Until(held.Add(3 * time.Second)))
	alive := m.running()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	what := fmt.Sprintf("filled %s's tmpfs (%d MiB ballast) for %v; a produce through it: %v",
		role(m, leader), filled>>20, time.Since(held).Round(time.Millisecond), errText(probeErr))
	if !alive {
		s.finding("%s exited on the full disk (%v): %s", m.id, m.current.err, panicLines(m.out.String()))
		m.start()
		c.waitReady(m)
		return what + "; it EXITED and was restarted"
	}
	s.pause()
	freed := time.Now()
	for time.Since(freed) < 10*time.Second {
		if _, ok := s.converged(); !ok {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Caught up, perhaps by a snapshot the leader sent; it must also
		// take new entries (a Raft log left failed by ENOSPC does not).
		caughtUp := time.Since(freed)
		s.resume()
		s.p.waitProgress(t, 20)
		s.pause()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, ok := s.converged(); ok {
				return what + fmt.Sprintf("; caught up by itself %v after space was freed, and applies new writes",
					caughtUp.Round(time.Millisecond))
			}
		}
		s.finding("%s caught up %v after space was freed (a snapshot?) but then did not apply 20 new writes within 5s (stats: %s); restarted it with kill -9",
			m.id, caughtUp.Round(time.Millisecond), s.statsLine())
		m.kill9()
		m.start()
		c.waitReady(m)
		return what + "; caught up but did NOT apply new writes, restarted"
	}
	s.finding("%s did not catch up within 10s after space was freed (stats: %s); restarted it with kill -9",
		m.id, s.statsLine())
	m.kill9()
	m.start()
	c.waitReady(m)
	return what + "; did NOT catch up by itself, restarted"
}

// probe produces one record through m, counting it as the producer's.
func (s *soak) probe(m *member, v string) error {
	p := s.p
	p.mu.Lock()
	p.sent[v] = true
	p.mu.Unlock()
	ctx, cancel := s.c.call(3 * time.Second)
	defer cancel()
	sent := time.Now()
	resp, err := s.c.client(m.addr).Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte(v)}})
	if err == nil {
		p.mu.Lock()
		p.acks = append(p.acks, ack{offset: resp.GetOffset(), value: v, sent: sent, received: time.Now()})
		p.mu.Unlock()
	}
	return err
}

func errText(err error) string {
	if err == nil {
		return "acknowledged"
	}
	return err.Error()
}

// panicLines returns a process's panic message and the frame that raised
// it, or the last lines of its output.
func panicLines(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "panic: ") {
			return strings.Join(lines[i:min(len(lines), i+8)], " | ")
		}
	}
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// flipStore stops a follower, flips one byte inside one record's frame in
// a sealed store segment below its latest Raft snapshot if old (all its
// records precede the snapshot's next offset), at or past it otherwise,
// and restarts it.
func (s *soak) flipStore(leader *member, old bool) string {
	t, c := s.t, s.c
	m := s.pick(c.followers(leader))
	m.kill9()
	dir := s.dataDir(m)
	next, snapped := latestSnapshotNext(t, filepath.Join(dir, "raft", "snapshots"))
	segs := segmentFiles(t, filepath.Join(dir, "log"))
	var candidates []string
	for i := 0; i+1 < len(segs); i++ { // sealed: all but the newest
		below := snapped && segmentBase(t, segs[i+1]) <= next
		past := !snapped || segmentBase(t, segs[i]) >= next
		if (old && below) || (!old && past) {
			candidates = append(candidates, segs[i])
		}
	}
	var what string
	if len(candidates) == 0 {
		what = fmt.Sprintf("kill -9 %s: no sealed segment %s the latest snapshot (next %d; %d segments), no flip",
			role(m, leader), map[bool]string{true: "below", false: "past"}[old], next, len(segs))
	} else {
		seg := candidates[s.rng.Intn(len(candidates))]
		offset, pos := s.flipRecord(seg)
		what = fmt.Sprintf("kill -9 %s, flipped byte %d of %s (record %d; the latest snapshot's next is %d; %d candidate segments)",
			role(m, leader), pos, filepath.Base(seg), offset, next, len(candidates))
		if old {
			if s.damaged[m] == nil {
				s.damaged[m] = map[uint64]bool{}
			}
			s.damaged[m][offset] = true
		}
	}
	s.logf("round %d %s: %s; restarting", s.round, s.kind, what)
	start := time.Now()
	m.start()
	c.waitReady(m)
	return what + fmt.Sprintf(", serving after %v", time.Since(start).Round(time.Millisecond))
}

// flipRecord XORs one byte of a random record's frame (header or value,
// not padding) in the store file seg, and returns the record's offset and
// the byte's position.
func (s *soak) flipRecord(seg string) (uint64, int64) {
	t := s.t
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	type frame struct {
		pos, size int64
		offset    uint64
	}
	// Frames per logstore/doc.go, in the store's format version: v1 has a
	// 28-byte header (type byte, length, offset) and 8-byte alignment, v2 a
	// 20-byte one (length<<2 | type, low 32 bits of the offset) and 4.
	var frames []frame
	v2 := binary.LittleEndian.Uint16(b[8:10]) == 2
	base := segmentBase(t, seg)
	for pos := int64(32); ; {
		var n, hs, align int64
		if v2 {
			if pos+20 > int64(len(b)) || b[pos]&3 != 1 {
				break
			}
			n, hs, align = int64(binary.LittleEndian.Uint32(b[pos:])>>2), 20, 4
		} else {
			if pos+28 > int64(len(b)) || b[pos] != 1 {
				break
			}
			n, hs, align = int64(binary.LittleEndian.Uint32(b[pos+4:])), 28, 8
		}
		frames = append(frames, frame{pos: pos, size: hs + n, offset: base + uint64(len(frames))})
		pos += (hs + n + align - 1) &^ (align - 1)
	}
	if len(frames) == 0 {
		t.Fatalf("%s holds no frames", seg)
	}
	f := frames[s.rng.Intn(len(frames))]
	pos := f.pos + s.rng.Int63n(f.size)
	file, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	one := []byte{b[pos] ^ byte(1+s.rng.Intn(255))}
	if _, err := file.WriteAt(one, pos); err != nil {
		t.Fatal(err)
	}
	return f.offset, pos
}

// segmentFiles lists a logstore directory's store files, oldest first.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.store"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names) // bases are zero padded
	return names
}

func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs := segmentFiles(t, dir)
	if len(segs) == 0 {
		t.Fatalf("no segment in %s", dir)
	}
	return segs[len(segs)-1]
}

// segmentBase is the base offset a segment file is named by.
func segmentBase(t *testing.T, path string) uint64 {
	t.Helper()
	base, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".store"), 10, 64)
	if err != nil {
		t.Fatalf("segment file %s: %v", path, err)
	}
	return base
}

// latestSnapshotNext returns the next offset recorded in the header of the
// snapshot with the highest Raft index (cluster/fsm.go: state.bin starts
// with "PLSNAP01", then next), or false without a snapshot. Whether the
// node took it (its files are links to the store's segments) or received it
// (its store was rebuilt from the stream), a restart cuts the store back to
// that offset and replays Raft's log from there.
func latestSnapshotNext(t *testing.T, dir string) (uint64, bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var best struct {
		index, next uint64
		ok          bool
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var meta struct{ Index uint64 }
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if best.ok && meta.Index < best.index {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name(), "state.bin"))
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 16)
		_, err = io.ReadFull(f, head)
		f.Close()
		if err != nil || (string(head[:8]) != "PLSNAP01" && string(head[:8]) != "PLSNAP02") { // next is at 8 in both
			t.Fatalf("%s/state.bin: header %q: %v", e.Name(), head, err)
		}
		best.index, best.next, best.ok = meta.Index, binary.LittleEndian.Uint64(head[8:]), true
	}
	return best.next, best.ok
}

// pause stops the producer and waits for it; resume starts it again.
func (s *soak) pause() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

func (s *soak) resume() {
	if s.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { s.p.run(ctx) })
	s.stop = func() {
		cancel()
		wg.Wait()
	}
}

// converged reports, in one pass, whether every running node has applied
// the same number of records.
func (s *soak) converged() (uint64, bool) {
	var next uint64
	first := true
	for _, m := range s.c.members {
		if !m.running() {
			continue
		}
		ctx, cancel := s.c.call(2 * time.Second)
		st, err := s.c.client(m.addr).GetStats(ctx, &logv1.GetStatsRequest{})
		cancel()
		if err != nil || (!first && st.GetNextOffset() != next) {
			return 0, false
		}
		next, first = st.GetNextOffset(), false
	}
	return next, true
}

// waitConverged is testCluster.waitConverged, failing with what each node
// reports and the last errors it logged.
func (s *soak) waitConverged() uint64 {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if next, ok := s.converged(); ok {
			return next
		}
	}
	var errs []string
	for _, m := range s.c.members {
		var last []string
		for _, l := range strings.Split(m.out.String(), "\n") {
			if strings.Contains(l, `"level":"ERROR"`) {
				last = append(last, l)
			}
		}
		errs = append(errs, fmt.Sprintf("%s's last errors:\n%s", m.id, strings.Join(last[max(0, len(last)-3):], "\n")))
	}
	s.t.Fatalf("the nodes did not apply the same records within 30s: %s\n%s", s.statsLine(), strings.Join(errs, "\n"))
	return 0
}

func (s *soak) statsLine() string {
	var parts []string
	for _, m := range s.c.members {
		ctx, cancel := s.c.call(2 * time.Second)
		st, err := s.c.client(m.addr).GetStats(ctx, &logv1.GetStatsRequest{})
		cancel()
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", m.id, err))
		} else {
			parts = append(parts, fmt.Sprintf("%s next %d", m.id, st.GetNextOffset()))
		}
	}
	return strings.Join(parts, ", ")
}

// check pauses the producer and checks the cluster (see TestChaosSoak),
// then resumes it and waits for 20 more acknowledged writes.
func (s *soak) check() {
	t, c := s.t, s.c
	start := time.Now()
	s.pause()
	c.waitLeader(len(c.members))
	next := s.waitConverged()
	logs := make([][][]byte, len(c.members))
	for i, m := range c.members {
		if len(s.damaged[m]) == 0 {
			logs[i] = c.readLog(m.addr, next)
		} else {
			logs[i] = s.readDamaged(m, next)
		}
	}
	merged := make([][]byte, next)
	for off := range next {
		from := ""
		for i, m := range c.members {
			if s.damaged[m][off] {
				continue
			}
			if merged[off] == nil {
				merged[off], from = logs[i][off], m.id
			} else if string(logs[i][off]) != string(merged[off]) {
				t.Fatalf("offset %d: %s has %q, %s has %q", off, m.id, logs[i][off], from, merged[off])
			}
		}
		if merged[off] == nil {
			t.Fatalf("offset %d is damaged on every node", off)
		}
	}
	s.p.verify(t, merged)
	s.p.mu.Lock()
	s.checked = len(s.p.acks)
	s.p.mu.Unlock()
	s.next = next
	checked := time.Since(start)
	s.resume()
	took := time.Now()
	s.p.waitProgress(t, 20)
	damaged := 0
	for _, offs := range s.damaged {
		damaged += len(offs)
	}
	s.logf("round %d %s: checked %d records on 3 nodes, %d acknowledged all present and identical, %d flipped old records DataLoss where flipped and served by the others (%v); took 20 writes in %v",
		s.round, s.kind, next, s.checked, damaged, checked.Round(time.Millisecond), time.Since(took).Round(time.Millisecond))
}

// healed notes that m serves its damaged record off again: its store was
// replaced by a snapshot from a peer (InstallSnapshot after it fell
// behind). From now on the record is compared with the other nodes' copies
// like any other, so a wrong value still fails the check.
func (s *soak) healed(m *member, off uint64) {
	delete(s.damaged[m], off)
	s.healedRecords++
	s.logf("round %d %s: %s serves record %d again (its store was replaced by a snapshot?); compared with the others",
		s.round, s.kind, m.id, off)
}

// readDamaged reads records [0, next) from m, which must answer DataLoss
// for its damaged records (or serve them healed) and serve every other one.
func (s *soak) readDamaged(m *member, next uint64) [][]byte {
	t, c := s.t, s.c
	out := make([][]byte, next)
	for from := uint64(0); from < next; {
		ctx, cancel := c.call(30 * time.Second)
		stream, err := c.client(m.addr).ConsumeStream(ctx, &logv1.ConsumeStreamRequest{Offset: from, MaxBatch: 512})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		for from < next && stream.Receive() {
			msg := stream.Msg()
			recs := msg.GetRecords()
			if msg.GetRecord() != nil {
				recs = append(recs, msg.GetRecord())
			}
			for _, r := range recs {
				if r.GetOffset() != from {
					t.Fatalf("%s: offset %d, want %d", m.id, r.GetOffset(), from)
				}
				if s.damaged[m][from] {
					s.healed(m, from)
				}
				if from < next {
					out[from] = r.GetValue()
				}
				from++
			}
		}
		err = stream.Err()
		stream.Close()
		cancel()
		if from >= next {
			break
		}
		if connect.CodeOf(err) != connect.CodeDataLoss {
			t.Fatalf("%s: stream from %d ended: %v", m.id, from, err)
		}
		// A batch ends at the first damaged record: read one at a time
		// to find it.
		ctx, cancel = c.call(5 * time.Second)
		resp, err := c.client(m.addr).Consume(ctx, &logv1.ConsumeRequest{Offset: from})
		cancel()
		switch {
		case err == nil:
			if s.damaged[m][from] {
				s.healed(m, from)
			}
			out[from] = resp.GetRecord().GetValue()
		case connect.CodeOf(err) == connect.CodeDataLoss && s.damaged[m][from]:
			// As expected: the one record with the flipped byte.
		default:
			t.Fatalf("%s: record %d: %v (damaged records there: %v)", m.id, from, err, slices.Sorted(maps.Keys(s.damaged[m])))
		}
		from++
	}
	return out
}

// tmpfsMount is a size-capped tmpfs mounted over dir in a mount namespace
// of its own, held by a shell that lives until the test ends: a node run
// through nsenter into that namespace has its data dir on it, and it
// survives the node's restarts. This process reaches it at path(dir).
type tmpfsMount struct {
	dir string
	pid int
}

func (d *tmpfsMount) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", d.pid, p) }

// mountTmpfs mounts the tmpfs (root only: nsenter into the namespace needs
// CAP_SYS_ADMIN in this one), or says why it cannot.
func mountTmpfs(t *testing.T, dir, size string) (*tmpfsMount, error) {
	t.Helper()
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size="$2" tmpfs "$1" && echo ready && read x`, "sh", dir, size)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("mount tmpfs in a mount namespace: %s", stderr.String())
	}
	t.Cleanup(func() {
		stdin.Close() // the holder's read ends, it exits, the tmpfs goes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &tmpfsMount{dir: dir, pid: cmd.Process.Pid}, nil
}

// fillDisk writes ballast until the file system is full and returns its size.
func fillDisk(t *testing.T, ballast string) int64 {
	t.Helper()
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

// netnsUnavailable says why network namespaces cannot be made here, or "".
func netnsUnavailable() string {
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 (ip) is not installed"
	}
	name := fmt.Sprintf("plchaosprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	exec.Command("ip", "netns", "del", name).Run()
	return ""
}
