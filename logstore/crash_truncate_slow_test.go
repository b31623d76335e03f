//go:build slow

package logstore_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// truncateChild appends, truncates and resets from one goroutine, as Raft
// drives its log store, reporting each operation on stdout: "a off gen" once
// an append is acknowledged, "t+ from"/"t- from" around TruncateFrom and
// "r+ next"/"r- next" around Reset. It runs until killed.
func truncateChild(dir, roundStr string) error {
	round, _ := strconv.Atoi(roundStr)
	r := rand.New(rand.NewPCG(uint64(round), uint64(time.Now().UnixNano())))
	l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 4096, Sync: crashPolicy(round)})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		lo, next := l.Bounds()
		switch k := r.IntN(100); {
		case k < 92:
			gen := round*1_000_000 + i
			off, err := l.Append(context.Background(), genValue2(next, gen))
			if err != nil {
				return err
			}
			fmt.Printf("a %d %d\n", off, gen)
		case k < 98:
			from := lo + r.Uint64N(next-lo+1)
			if k < 96 {
				from = max(lo, next-min(next, r.Uint64N(40)))
			}
			fmt.Printf("t+ %d\n", from)
			if err := l.TruncateFrom(from); err != nil {
				return err
			}
			fmt.Printf("t- %d\n", from)
		default:
			to := next + r.Uint64N(50)
			if k == 99 {
				to = r.Uint64N(next + 1)
			}
			fmt.Printf("r+ %d\n", to)
			if err := l.Reset(to); err != nil {
				return err
			}
			fmt.Printf("r- %d\n", to)
		}
	}
}

// logModel is what the log must hold: the generation written at each
// offset in [lowest, next).
type logModel struct {
	lowest, next uint64
	gens         map[uint64]int
}

// TestCrashDuringTruncation kills a child that appends, truncates and resets
// at random moments and checks after each restart that the log is what the
// acknowledged operations made it, give or take the one operation in
// flight: an append may or may not be there; a TruncateFrom may have cut
// any suffix of what it was deleting; a Reset happened wholly or not at
// all. Every record must be one written at its offset in the generation the
// model says, so a frame from before a truncation can never come back.
func TestCrashDuringTruncation(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	m := logModel{gens: map[uint64]int{}}
	const rounds = 24
	for round := range rounds {
		cmd, stdout, lines := startChild(t, "truncate", dir, round)
		var events []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			for lines.Scan() {
				events = append(events, lines.Text())
			}
			io.Copy(io.Discard, stdout)
		}()
		time.Sleep(time.Duration(10+r.IntN(150)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		<-done
		m = verifyTruncateCrash(t, dir, round, m, events)
	}
}

func verifyTruncateCrash(t *testing.T, dir string, round int, m logModel, events []string) logModel {
	t.Helper()
	var pending string // an operation begun and not reported done
	var pendingAt uint64
	var ops [3]int
	for _, ev := range events {
		var kind string
		var a, b uint64
		n, _ := fmt.Sscanf(ev, "%s %d %d", &kind, &a, &b)
		switch {
		case kind == "a" && n == 3:
			if a != m.next {
				t.Fatalf("round %d: append acknowledged at %d, model next %d", round, a, m.next)
			}
			m.gens[a] = int(b)
			m.next++
			ops[0]++
		case (kind == "t+" || kind == "r+") && n >= 2:
			pending, pendingAt = kind, a
		case kind == "t-" && n >= 2:
			for o := a; o < m.next; o++ {
				delete(m.gens, o)
			}
			m.next, pending = a, ""
			ops[1]++
		case kind == "r-" && n >= 2:
			m = logModel{lowest: a, next: a, gens: map[uint64]int{}}
			pending = ""
			ops[2]++
		default:
			t.Fatalf("round %d: child said %q", round, ev)
		}
	}
	l, err := logstore.Open(dir, logstore.Config{MaxSegmentBytes: 4096})
	if err != nil {
		t.Fatalf("round %d: reopen after kill -9 (pending %q %d): %v", round, pending, pendingAt, err)
	}
	defer l.Close()
	lo, next := l.Bounds()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("round %d (%s, pending %q %d, model [%d, %d)): log [%d, %d): %s", round, crashPolicy(round),
			pending, pendingAt, m.lowest, m.next, lo, next, fmt.Sprintf(format, args...))
	}
	switch {
	case pending == "r+" && lo == pendingAt && next == pendingAt:
		m = logModel{lowest: lo, next: next, gens: map[uint64]int{}}
	case lo != m.lowest:
		fail("lowest moved")
	case pending == "t+" && (next < pendingAt || next > m.next):
		fail("a truncation from %d in flight must leave a prefix of at least that", pendingAt)
	case pending == "" && next != m.next && next != m.next+1:
		fail("acknowledged records lost or extra records found")
	case pending == "r+" && next != m.next:
		fail("a Reset in flight left part of a change")
	}
	gens := map[uint64]int{}
	for off := lo; off < next; off++ {
		rec, err := l.Read(context.Background(), off)
		if err != nil {
			fail("Read(%d): %v", off, err)
		}
		o, gen, err := parseGen(rec.Value)
		if err != nil || o != off || string(rec.Value) != string(genValue2(o, gen)) {
			fail("offset %d holds %.30q, not a record written there", off, rec.Value)
		}
		if want, ok := m.gens[off]; ok && gen != want {
			fail("offset %d holds generation %d, the model %d: a record came back from before a truncation", off, gen, want)
		}
		gens[off] = gen
	}
	t.Logf("round %d (%s): %d appends, %d truncations, %d resets acknowledged; pending %q; log [%d, %d)",
		round, crashPolicy(round), ops[0], ops[1], ops[2], pending, lo, next)
	return logModel{lowest: lo, next: next, gens: gens}
}
