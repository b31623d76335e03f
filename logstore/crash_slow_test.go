//go:build slow

package logstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proglog/proglog/internal/slowtest"
	"github.com/proglog/proglog/logstore"
)

// The test binary re-executes itself as the child of the crash and
// disk-full tests; this environment variable selects the child's job.
const childEnv = "PROGLOG_LOGSTORE_CHILD"

func init() { runCrashChild = childMain }

func childMain() bool {
	var err error
	switch os.Getenv(childEnv) {
	case "":
		return false
	case "crash":
		err = crashChild(os.Getenv("PROGLOG_LOGSTORE_DIR"), os.Getenv("PROGLOG_LOGSTORE_ROUND"))
	case "diskfull":
		err = diskFullChild(os.Getenv("PROGLOG_LOGSTORE_DIR"))
	case "truncate":
		err = truncateChild(os.Getenv("PROGLOG_LOGSTORE_DIR"), os.Getenv("PROGLOG_LOGSTORE_ROUND"))
	default:
		err = fmt.Errorf("unknown child %q", os.Getenv(childEnv))
	}
	if err != nil {
		fmt.Printf("child error: %v\n", err)
		os.Exit(3)
	}
	os.Exit(0)
	return true
}

// genValue is the value writer w appends as its seq-th record in a round;
// its length and bytes are derived from those numbers alone.
func genValue(round, w, seq int) []byte {
	r := rand.New(rand.NewPCG(uint64(round)<<32|uint64(w), uint64(seq)))
	v := fmt.Appendf(nil, "r%d w%d s%d ", round, w, seq)
	n := r.IntN(3000)
	for range n {
		v = append(v, byte(r.Uint32()))
	}
	return v
}

func parseValue(v []byte) (round, w, seq int, err error) {
	head, _, ok := bytes.Cut(v, []byte(" s"))
	if !ok {
		return 0, 0, 0, fmt.Errorf("value %.40q has no header", v)
	}
	if _, err := fmt.Sscanf(string(head)+" s"+strings.SplitN(string(v[len(head)+2:]), " ", 2)[0], "r%d w%d s%d", &round, &w, &seq); err != nil {
		return 0, 0, 0, fmt.Errorf("value %.40q: %v", v, err)
	}
	return round, w, seq, nil
}

const crashWriters = 8

// crashChild appends from several writers, acknowledging each durable
// record on stdout, until it is killed.
func crashChild(dir, roundStr string) error {
	round, _ := strconv.Atoi(roundStr)
	// Every third round writes v1 segments, which the check after the kill
	// (and the next child) opens with v2: a v1 active segment, torn or
	// not, is recovered and then sealed.
	cfg := logstore.Config{MaxSegmentBytes: 256 << 10, Sync: crashPolicy(round)}
	if round%3 == 2 {
		cfg = logstore.WithFormatV1(cfg)
	}
	l, err := logstore.Open(dir, cfg)
	if err != nil {
		return err
	}
	var out sync.Mutex
	ack := func(off uint64, w, seq int) {
		out.Lock()
		fmt.Fprintf(os.Stdout, "ack %d %d %d\n", off, w, seq)
		out.Unlock()
	}
	fmt.Println("ready")
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() {
			ctx := context.Background()
			for seq := 0; ; {
				if seq%5 == 4 {
					vals := [][]byte{genValue(round, w, seq), genValue(round, w, seq+1), genValue(round, w, seq+2)}
					base, err := l.AppendBatch(ctx, vals)
					if err != nil {
						fmt.Printf("child error: %v\n", err)
						os.Exit(3)
					}
					for i := range vals {
						ack(base+uint64(i), w, seq+i)
					}
					seq += len(vals)
					continue
				}
				off, err := l.Append(ctx, genValue(round, w, seq))
				if err != nil {
					fmt.Printf("child error: %v\n", err)
					os.Exit(3)
				}
				ack(off, w, seq)
				seq++
			}
		})
	}
	wg.Wait()
	return nil
}

type ackRec struct{ w, seq int }

// crashPolicy rotates the sync policy over the rounds: kill -9 leaves the
// page cache intact, so no policy may lose an acknowledged record to it.
func crashPolicy(round int) logstore.SyncPolicy {
	return []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncAlways, logstore.SyncInterval, logstore.SyncNever}[round%4]
}

// TestCrash kills a child appending with group commit at random moments,
// 30 times, and checks after each restart that every acknowledged record
// reads back byte for byte, offsets are dense, every record is one a writer
// sent, and each writer's records form a gapless prefix in order. Every
// other round also tears the unacknowledged tail, as a power loss could.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 30
	for round := range rounds {
		cmd, stdout, lines := startChild(t, "crash", dir, round)
		acks := map[uint64]ackRec{}
		var childErr string
		done := make(chan struct{})
		go func() {
			defer close(done)
			for lines.Scan() {
				var off uint64
				var a ackRec
				if _, err := fmt.Sscanf(lines.Text(), "ack %d %d %d", &off, &a.w, &a.seq); err == nil {
					acks[off] = a
				} else if strings.HasPrefix(lines.Text(), "child error") {
					childErr = lines.Text()
				}
			}
			io.Copy(io.Discard, stdout)
		}()
		time.Sleep(time.Duration(5+r.IntN(120)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		<-done
		if childErr != "" {
			t.Fatalf("round %d: %s", round, childErr)
		}
		if round%2 == 1 {
			chopUnacknowledgedTail(t, dir, acks, r)
		}
		if round%3 == 1 {
			tearTimeIndex(t, dir, r)
		}
		verifyCrashLog(t, dir, round, acks)
	}
}

// tearTimeIndex leaves what a crash while writing a time index may leave
// (beyond the kill itself, which may have come in the middle of one): a
// half-written temporary file, and a time index cut short, as a machine
// crash can leave one under SyncNever, which does not fsync it.
func tearTimeIndex(t *testing.T, dir string, r *rand.Rand) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.timeindex"))
	if err != nil || len(files) == 0 {
		return
	}
	f := files[r.IntN(len(files))]
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f+".tmp", b[:r.IntN(len(b))], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, int64(r.IntN(len(b)))); err != nil {
		t.Fatal(err)
	}
}

// chopUnacknowledgedTail simulates what a power loss may do beyond a kill:
// it cuts the active store at a random byte after the last acknowledged
// record, tearing unacknowledged frames, so that recovery's torn-tail repair
// runs inside the crash loop too. It finds the frames with StoreFrames.
func chopUnacknowledgedTail(t *testing.T, dir string, acks map[uint64]ackRec, r *rand.Rand) {
	t.Helper()
	if len(acks) == 0 {
		return
	}
	var maxAcked uint64
	for off := range acks {
		maxAcked = max(maxAcked, off)
	}
	stores, err := filepath.Glob(filepath.Join(dir, "*.store"))
	if err != nil || len(stores) == 0 {
		t.Fatalf("no stores: %v", err)
	}
	active := stores[len(stores)-1] // zero-padded names sort by base
	b, err := os.ReadFile(active)
	if err != nil {
		t.Fatal(err)
	}
	keep := int64(32)
	offsets, ends := logstore.StoreFrames(b)
	for i, off := range offsets {
		if off > maxAcked {
			break
		}
		keep = ends[i]
	}
	if int64(len(b)) <= keep {
		return // a store created just before the kill, header not (fully) written
	}
	cut := keep + r.Int64N(int64(len(b))-keep+1)
	if err := os.Truncate(active, cut); err != nil {
		t.Fatal(err)
	}
}

func verifyCrashLog(t *testing.T, dir string, round int, acks map[uint64]ackRec) {
	t.Helper()
	var logs bytes.Buffer
	l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 256 << 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("round %d: reopen after kill -9: %v", round, err)
	}
	defer l.Close()
	lo, next := l.Bounds()
	if lo != 0 {
		t.Fatalf("round %d: lowest %d", round, lo)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 0 {
		t.Fatalf("round %d: Open left %v", round, tmps)
	}
	type key struct{ round, w int }
	lastSeq := map[key]int{}
	var times []int64 // by offset
	var off uint64
	for off < next {
		recs, err := l.ReadBatch(context.Background(), off, 512, 4<<20, nil)
		if err != nil {
			t.Fatalf("round %d: ReadBatch(%d) of [0,%d): %v", round, off, next, err)
		}
		for _, rec := range recs {
			rr, w, seq, err := parseValue(rec.Value)
			if err != nil {
				t.Fatalf("round %d: offset %d: %v", round, rec.Offset, err)
			}
			if !bytes.Equal(rec.Value, genValue(rr, w, seq)) {
				t.Fatalf("round %d: offset %d holds a damaged value for r%d w%d s%d", round, rec.Offset, rr, w, seq)
			}
			k := key{rr, w}
			prev, ok := lastSeq[k]
			if (!ok && seq != 0) || (ok && seq != prev+1) {
				t.Fatalf("round %d: offset %d is r%d w%d s%d, but that writer's previous record was s%d (present %v): a gap or reordering", round, rec.Offset, rr, w, seq, prev, ok)
			}
			lastSeq[k] = seq
			times = append(times, rec.Time.UnixNano())
			if a, ok := acks[rec.Offset]; ok && rr == round && (a.w != w || a.seq != seq) {
				t.Fatalf("round %d: offset %d acknowledged as w%d s%d, holds w%d s%d", round, rec.Offset, a.w, a.seq, w, seq)
			}
		}
		off += uint64(len(recs))
	}
	for ackOff, a := range acks {
		if ackOff >= next {
			t.Fatalf("round %d: acknowledged offset %d (w%d s%d) lost; log ends at %d", round, ackOff, a.w, a.seq, next)
		}
	}
	// Lookups by time against a scan of the times just read, through
	// time indexes the kill may have left half written.
	r := rand.New(rand.NewPCG(uint64(round), 11))
	for range 50 {
		if len(times) == 0 {
			break
		}
		probe := times[r.IntN(len(times))] + r.Int64N(3) - 1
		want, _ := slices.BinarySearch(times, probe)
		if got, err := l.OffsetForTime(t.Context(), time.Unix(0, probe)); err != nil || got != uint64(want) {
			t.Fatalf("round %d: OffsetForTime(%d) = %d, %v; want %d", round, probe, got, err, want)
		}
	}
	torn := ""
	if bytes.Contains(logs.Bytes(), []byte("torn tail")) {
		torn = " (recovery cut a torn tail)"
	}
	t.Logf("round %d (%s): %d acknowledged this round, log has %d records%s", round, crashPolicy(round), len(acks), next, torn)
}

// diskFullChild runs inside a mount namespace where dir is an 8 MiB tmpfs.
func diskFullChild(dir string) error {
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 1<<20), 0o644); err != nil {
		return err
	}
	logDir := filepath.Join(dir, "log")
	cfg := logstore.Config{MaxSegmentBytes: 1 << 20}
	l, err := logstore.Open(logDir, cfg)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var failures []error
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				v := genValue(0, w, seq)
				off, err := l.Append(context.Background(), v)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				acked[off] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range failures {
		if !errors.Is(err, logstore.ErrFailed) || !strings.Contains(err.Error(), "no space left on device") {
			return fmt.Errorf("append failed with %v, want ErrFailed naming ENOSPC", err)
		}
	}
	fmt.Printf("full after %d acknowledged records: %v\n", len(acked), failures[0])
	if _, err := l.Append(context.Background(), []byte("x")); !errors.Is(err, logstore.ErrFailed) {
		return fmt.Errorf("append after failure = %v, want ErrFailed", err)
	}
	if err := checkAcked(l, acked); err != nil {
		return fmt.Errorf("failed log: %w", err)
	}
	l.Close()

	// Reopening on the still-full disk must not lose anything either (it
	// may fail for want of space, but not damage the log).
	if l, err := logstore.Open(logDir, cfg); err == nil {
		if err := checkAcked(l, acked); err != nil {
			return fmt.Errorf("reopened on a full disk: %w", err)
		}
		l.Close()
	} else {
		fmt.Printf("reopen on full disk: %v\n", err)
	}

	if err := os.Remove(ballast); err != nil {
		return err
	}
	l, err = logstore.Open(logDir, cfg)
	if err != nil {
		return fmt.Errorf("reopen after freeing space: %w", err)
	}
	if err := checkAcked(l, acked); err != nil {
		return fmt.Errorf("after freeing space: %w", err)
	}
	for i := range 100 {
		v := genValue(1, 0, i)
		off, err := l.Append(context.Background(), v)
		if err != nil {
			return fmt.Errorf("append after freeing space: %w", err)
		}
		acked[off] = v
	}
	if err := l.Close(); err != nil {
		return err
	}
	l, err = logstore.Open(logDir, cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := checkAcked(l, acked); err != nil {
		return fmt.Errorf("final: %w", err)
	}
	fmt.Printf("ok %d acknowledged records intact\n", len(acked))
	return nil
}

func checkAcked(l *logstore.Log, acked map[uint64][]byte) error {
	_, next := l.Bounds()
	for off, v := range acked {
		rec, err := l.Read(context.Background(), off)
		if err != nil {
			return fmt.Errorf("acknowledged offset %d (next %d): %w", off, next, err)
		}
		if !bytes.Equal(rec.Value, v) {
			return fmt.Errorf("acknowledged offset %d reads back different bytes", off)
		}
	}
	return nil
}

// TestDiskFull fills a size-capped tmpfs (real ENOSPC) in a user and mount
// namespace: appends fail with ErrFailed, nothing acknowledged is lost, and
// the log continues once space is back.
func TestDiskFull(t *testing.T) {
	slowtest.NeedUnshare(t)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "-rm", "sh", "-c", `mount -t tmpfs -o size=8m tmpfs "$1" && exec "$2" -test.run='^$'`, "sh", dir, os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=diskfull", "PROGLOG_LOGSTORE_DIR="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		if bytes.Contains(out, []byte("mount:")) {
			slowtest.Unavailable(t, "cannot mount tmpfs in a user namespace: %s", out)
		}
		t.Fatalf("disk-full child failed: %v", err)
	}
	if !bytes.Contains(out, []byte("ok ")) {
		t.Fatal("child did not report success")
	}
}

// startChild runs this test binary as a child in mode on dir and waits for
// its "ready" line; the caller reads the rest of its lines and kills it.
func startChild(t *testing.T, mode, dir string, round int) (*exec.Cmd, io.Reader, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "PROGLOG_LOGSTORE_DIR="+dir, "PROGLOG_LOGSTORE_ROUND="+strconv.Itoa(round))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("round %d: child did not start: %q", round, lines.Text())
	}
	return cmd, stdout, lines
}
