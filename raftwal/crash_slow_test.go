//go:build slow

package raftwal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that appends to
// the WAL until it is killed; these variables tell it where and which round.
const (
	crashChildEnv = "PROGLOG_RAFTWAL_CRASH_DIR"
	crashLogs     = 6
	crashKeep     = 40 // the child never truncates the last crashKeep acknowledged entries of a log
)

func init() {
	runCrashChild = func() bool {
		root := os.Getenv(crashChildEnv)
		if root == "" {
			return false
		}
		if err := crashChild(root); err != nil {
			fmt.Printf("child error: %v\n", err)
			os.Exit(3)
		}
		os.Exit(0)
		return true
	}
}

// crashValue is entry index of log g: its bytes follow from the two alone.
func crashValue(g int, index uint64) []byte {
	v := fmt.Appendf(nil, "g%d i%d ", g, index)
	return append(v, bytes.Repeat([]byte{byte(index)}, int(index%700))...)
}

// crashChild appends batches to every log, one goroutine each, printing
// "ack g last" once an append returns; now and then it truncates a log's
// head (printing nothing: the parent checks only the last crashKeep), so
// the WAL deletes segments and moves small logs, until it is killed. An
// acknowledgement is written to stdout (the pipe, which outlives the
// child) before the truncation that counts from it: the parent, which
// reads every line the child wrote, never misses one a truncation
// followed.
func crashChild(root string) error {
	w, err := OpenWAL(Config{Dir: filepath.Join(root, "wal"), Root: root, SegmentBytes: 64 << 10, CompactEvery: 5 * time.Millisecond})
	if err != nil {
		return err
	}
	errs := make(chan error, crashLogs)
	for g := range crashLogs {
		l, err := w.Open(filepath.Join(root, fmt.Sprintf("g%d", g)))
		if err != nil {
			return err
		}
		go func() {
			for n := 0; ; n++ {
				_, next := l.Bounds()
				if next == 0 {
					next = 1
				}
				batch := make([][]byte, 1+n%5)
				for i := range batch {
					batch[i] = crashValue(g, next+uint64(i))
				}
				if next == 1 { // an empty log: number it from 1
					if err := l.Reset(1); err != nil {
						errs <- err
						return
					}
				}
				first, err := l.AppendBatch(context.Background(), batch)
				if err != nil || first != next {
					errs <- fmt.Errorf("g%d: AppendBatch at %d = %d, %v", g, next, first, err)
					return
				}
				fmt.Printf("ack %d %d\n", g, first+uint64(len(batch))-1) // one write: lines do not interleave
				if g%2 == 0 && n%7 == 6 && first > crashKeep+10 {        // the even logs compact, the odd ones idle at times
					if err := l.TruncateBefore(first - crashKeep); err != nil {
						errs <- err
						return
					}
				}
				if g%2 == 1 && n > 50 {
					select {} // idle from here: its few entries must survive the others' segments
				}
			}
		}()
	}
	return <-errs
}

// TestCrash kills a process appending to six logs of one WAL (kill -9) at
// a random moment, several times, each round reopening what the last left:
// every acknowledged entry of the last crashKeep of each log is there with
// its bytes, every entry the WAL holds reads back as written, and the
// segments do not pile up behind the idle logs.
func TestCrash(t *testing.T) {
	root := t.TempDir()
	acked := make([]uint64, crashLogs)
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+root)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		ack := func() {
			f := strings.Fields(lines.Text())
			if len(f) != 3 || f[0] != "ack" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child said %q", round, lines.Text())
			}
			g, _ := strconv.Atoi(f[1])
			last, _ := strconv.ParseUint(f[2], 10, 64)
			acked[g] = max(acked[g], last)
		}
		want := 200 + round*150 // acknowledgements before the kill
		for n := 0; n < want && lines.Scan(); n++ {
			ack()
		}
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		// What the child acknowledged before it died, still in the pipe:
		// it may have truncated counting from those.
		for lines.Scan() {
			ack()
		}
		cmd.Wait()
		checkCrashed(t, round, root, acked)
	}
}

// checkCrashed reopens the WAL the killed child left and checks it.
func checkCrashed(t *testing.T, round int, root string, acked []uint64) {
	t.Helper()
	w, err := OpenWAL(Config{Dir: filepath.Join(root, "wal"), Root: root, SegmentBytes: 64 << 10, CompactEvery: time.Hour})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer w.Close()
	for g := range crashLogs {
		l, err := w.Open(filepath.Join(root, fmt.Sprintf("g%d", g)))
		if err != nil {
			t.Fatal(err)
		}
		lowest, next := l.Bounds()
		if acked[g] > 0 && (next <= acked[g] || lowest > acked[g]+1-min(acked[g], crashKeep)) {
			t.Fatalf("round %d: g%d holds %d..%d; acknowledged up to %d, the last %d kept", round, g, lowest, next, acked[g], crashKeep)
		}
		for i := lowest; i < next; i++ {
			rec, err := l.Read(context.Background(), i)
			if err != nil || !bytes.Equal(rec.Value, crashValue(g, i)) {
				t.Fatalf("round %d: g%d entry %d: %.20q, %v; want %.20q", round, g, i, rec.Value, err, crashValue(g, i))
			}
		}
		l.Close()
	}
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	// The idle logs hold ~50 KB each, more than an eighth of a segment:
	// without moving them once the WAL is mostly dead records it grew
	// past 40 segments by the fifth round; with it, it stays near 20.
	st := w.Stats()
	t.Logf("round %d: %d segments, %d bytes", round, st.Segments, st.SizeBytes)
	if st.Segments > 40 {
		t.Fatalf("round %d: %d segments (%d bytes) after compaction", round, st.Segments, st.SizeBytes)
	}
}
