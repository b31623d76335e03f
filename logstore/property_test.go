package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestProperty runs random sequences of appends, batches, reads, reopens,
// truncations at either end and resets against an in-memory model of the log.
func TestProperty(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runModel(t, uint64(seed), 400)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 42))
	dir := t.TempDir()
	policies := []logstore.SyncPolicy{logstore.SyncAlways, logstore.SyncInterval, logstore.SyncNever}
	// Each open picks a format too, so the log mixes v1 and v2 segments and
	// every reopen may change the active segment's format.
	cfg := func() logstore.Config {
		c := logstore.Config{MaxSegmentBytes: 1024 + int64(r.IntN(3000)), Sync: policies[r.IntN(3)], MaxRecordBytes: 2000}
		return formats[r.IntN(len(formats))].cfg(c)
	}
	l, err := logstore.Open(dir, cfg())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	var model [][]byte // model[i] is the record at offset base+i
	var base, lowest uint64
	randValue := func() []byte {
		n := r.IntN(300)
		if r.IntN(20) == 0 {
			n = 2000
		}
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return v
	}
	for op := range ops {
		next := base + uint64(len(model))
		switch k := r.IntN(106); {
		case k < 35:
			v := randValue()
			off, err := l.Append(t.Context(), v)
			if err != nil || off != next {
				t.Fatalf("op %d: Append = %d, %v; want %d", op, off, err, next)
			}
			model = append(model, v)
		case k < 45:
			vals := make([][]byte, 1+r.IntN(8))
			for i := range vals {
				vals[i] = randValue()
			}
			base, err := l.AppendBatch(t.Context(), vals)
			if err != nil || base != next {
				t.Fatalf("op %d: AppendBatch = %d, %v; want %d", op, base, err, next)
			}
			model = append(model, vals...)
		case k < 70:
			off := r.Uint64N(next + 3)
			rec, err := l.Read(context.Background(), off)
			if off < lowest || off >= next {
				var re *logstore.RangeError
				if !errors.As(err, &re) || re.Lowest != lowest || re.Next != next {
					t.Fatalf("op %d: Read(%d) outside [%d,%d) = %v", op, off, lowest, next, err)
				}
				continue
			}
			if err != nil || rec.Offset != off || !bytes.Equal(rec.Value, model[off-base]) {
				t.Fatalf("op %d: Read(%d) = %d %x, %v", op, off, rec.Offset, rec.Value, err)
			}
		case k < 85:
			if next == lowest {
				continue
			}
			off := lowest + r.Uint64N(next-lowest)
			recs, err := l.ReadBatch(context.Background(), off, 1+r.IntN(20), r.IntN(3000), nil)
			if err != nil || len(recs) == 0 {
				t.Fatalf("op %d: ReadBatch(%d) = %d records, %v", op, off, len(recs), err)
			}
			for i, rec := range recs {
				if rec.Offset != off+uint64(i) || !bytes.Equal(rec.Value, model[rec.Offset-base]) {
					t.Fatalf("op %d: ReadBatch(%d)[%d] = offset %d", op, off, i, rec.Offset)
				}
			}
		case k < 92:
			if err := l.Close(); err != nil {
				t.Fatalf("op %d: Close: %v", op, err)
			}
			if l, err = logstore.Open(dir, cfg()); err != nil {
				t.Fatalf("op %d: reopen: %v", op, err)
			}
		case k < 97:
			off := r.Uint64N(next + 2)
			if err := l.TruncateBefore(off); err != nil {
				t.Fatalf("op %d: TruncateBefore(%d): %v", op, off, err)
			}
			lo, _ := l.Bounds()
			if lo < lowest || lo > max(lowest, min(off, next)) {
				t.Fatalf("op %d: TruncateBefore(%d) moved lowest %d -> %d (next %d)", op, off, lowest, lo, next)
			}
			lowest = lo
		case k < 102:
			from := lowest + r.Uint64N(next-lowest+1)
			if r.IntN(8) == 0 { // out of range on either side
				from = next + 1 + r.Uint64N(3)
				if lowest > 0 && r.IntN(2) == 0 {
					from = r.Uint64N(lowest)
				}
				var re *logstore.RangeError
				if err := l.TruncateFrom(from); !errors.As(err, &re) || re.Lowest != lowest || re.Next != next {
					t.Fatalf("op %d: TruncateFrom(%d) outside [%d,%d] = %v", op, from, lowest, next, err)
				}
				break
			}
			if err := l.TruncateFrom(from); err != nil {
				t.Fatalf("op %d: TruncateFrom(%d) of [%d,%d): %v", op, from, lowest, next, err)
			}
			model = model[:from-base]
		case k < 104:
			to := []uint64{0, lowest, next, next + r.Uint64N(1000), r.Uint64N(next + 1)}[r.IntN(5)]
			if err := l.Reset(to); err != nil {
				t.Fatalf("op %d: Reset(%d): %v", op, to, err)
			}
			base, lowest, model = to, to, nil
		default:
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := l.Wait(ctx, next)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("op %d: Wait(next) with a done context = %v", op, err)
			}
			if next > 0 {
				if err := l.Wait(ctx, next-1); err != nil {
					t.Fatalf("op %d: Wait(existing) = %v", op, err)
				}
			}
		}
		st := l.Stats()
		if st.Lowest != lowest || st.Next != base+uint64(len(model)) || st.Segments < 1 {
			t.Fatalf("op %d: Stats %+v, model lowest %d next %d", op, st, lowest, base+uint64(len(model)))
		}
		checkDisk(t, l, dir)
	}
}
