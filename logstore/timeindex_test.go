package logstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proglog/proglog/logstore"
)

// TestOffsetForTimeModel checks lookups against a linear scan of a model:
// runs of equal times, lookups before, between, at and after the records,
// retention and TruncateBefore having removed the start, TruncateFrom
// cutting into sealed segments, and reopens that mix formats (v1 and v2
// segments) and sampling densities and do things to the time index files:
// delete them, damage them, cut them short, leave a temporary file, or
// replace them by wrong ones with a valid CRC.
func TestOffsetForTimeModel(t *testing.T) {
	for seed := range uint64(24) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			cfg := func() logstore.Config {
				c := logstore.Config{MaxSegmentBytes: 1024 + int64(rng.IntN(3000)), Sync: logstore.SyncNever}
				c = logstore.WithTimeEvery(c, []int64{0, 64, 150, 500}[rng.IntN(4)])
				return formats[rng.IntN(len(formats))].cfg(c)
			}
			l, err := logstore.Open(dir, cfg())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { l.Close() }()
			var times []int64
			at := int64(1_000_000)
			lowest := uint64(0)
			check := func(what string) {
				t.Helper()
				for range 40 {
					probe := 999_000 + rng.Int64N(at-999_000+2000)
					if len(times) > 0 && rng.IntN(3) == 0 { // exactly a record's time
						probe = times[lowest+rng.Uint64N(uint64(len(times))-lowest)]
					}
					want := uint64(len(times))
					for i := lowest; i < uint64(len(times)); i++ {
						if times[i] >= probe {
							want = i
							break
						}
					}
					got, err := l.OffsetForTime(t.Context(), time.Unix(0, probe))
					if err != nil || got != want {
						t.Fatalf("%s: OffsetForTime(%d) = %d, %v; want %d (lowest %d, %d records)", what, probe, got, err, want, lowest, len(times))
					}
				}
			}
			check("empty")
			indexed := 0
			for range 30 {
				n := 1 + rng.IntN(60)
				recs := make([]logstore.Record, n)
				for i := range recs {
					if rng.IntN(3) > 0 { // a third keep the previous time
						at += rng.Int64N(100)
					}
					times = append(times, at)
					recs[i] = logstore.Record{Time: time.Unix(0, at), Value: value(i, rng.IntN(80))}
				}
				if _, err := l.AppendRecords(t.Context(), recs); err != nil {
					t.Fatal(err)
				}
				what := "append"
				switch rng.IntN(8) {
				case 0:
					what = "TruncateBefore"
					if err := l.TruncateBefore(uint64(len(times)) / 2); err != nil {
						t.Fatal(err)
					}
				case 1:
					what = "TruncateFrom"
					from := lowest + rng.Uint64N(uint64(len(times))-lowest+1)
					if err := l.TruncateFrom(from); err != nil {
						t.Fatal(err)
					}
					times = times[:from]
					if len(times) > 0 {
						at = times[len(times)-1]
					}
				case 2, 3:
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					what = "reopen: " + meddleTimeIndexes(t, rng, dir)
					if l, err = logstore.Open(dir, cfg()); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 0 {
						t.Fatalf("%s: Open left %v", what, tmps)
					}
				}
				lowest, _ = l.Bounds()
				check(what)
				if files, _ := filepath.Glob(filepath.Join(dir, "*.timeindex")); len(files) > 0 {
					indexed++
				}
			}
			// The test is no better than the time indexes it ran with.
			if indexed < 5 {
				t.Fatalf("only %d of 30 rounds had time index files", indexed)
			}
		})
	}
}

// meddleTimeIndexes does one thing to the time index files in dir (of a
// closed log) and says what.
func meddleTimeIndexes(t *testing.T, rng *rand.Rand, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.timeindex"))
	if err != nil || len(files) == 0 {
		return "no time index"
	}
	f := files[rng.IntN(len(files))]
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(f)
	var what string
	switch rng.IntN(7) {
	case 0:
		what = "nothing"
	case 1:
		what, b = "removed "+name, nil
	case 2:
		p := rng.IntN(len(b))
		b[p] ^= 1 << rng.IntN(8)
		what = fmt.Sprintf("flipped a bit of %s at %d", name, p)
	case 3:
		p := rng.IntN(len(b))
		what, b = fmt.Sprintf("cut %s at %d", name, p), b[:p]
	case 4:
		what = "left a half-written " + name + ".tmp"
		if err := os.WriteFile(f+".tmp", b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
	case 5:
		// Entries in order, a valid CRC, but lying: every time moved, or
		// every entry pointing at the next sample's record.
		what = "rewrote " + name + " with wrong entries"
		body := b[32 : len(b)-4]
		shift := rng.Int64N(400) - 200
		for e := 0; e+16 <= len(body); e += 16 {
			tm := int64(binary.LittleEndian.Uint64(body[e:]))
			binary.LittleEndian.PutUint64(body[e:], uint64(tm+shift))
		}
		if rng.IntN(2) == 0 && len(body) >= 32 {
			body = body[16:]
			b = append(b[:32], body...)
			b = append(b, 0, 0, 0, 0)
		}
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[32:len(b)-4], crc32.MakeTable(crc32.Castagnoli)))
	case 6:
		// Another segment's file under this name: its header names the
		// other base.
		o := files[rng.IntN(len(files))]
		what = "copied " + filepath.Base(o) + " over " + name
		if b, err = os.ReadFile(o); err != nil {
			t.Fatal(err)
		}
	}
	if b == nil {
		err = os.Remove(f)
	} else {
		err = os.WriteFile(f, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return what
}

// TestTimeIndexFiles: every sealed segment, and only those, has a time
// index file, whose entries sample the store every so many bytes from its
// first record on; removing the segments removes them.
func TestTimeIndexFiles(t *testing.T) {
	forFormats(t, func(t *testing.T, format func(logstore.Config) logstore.Config) {
		dir := t.TempDir()
		cfg := logstore.WithTimeEvery(format(logstore.Config{MaxSegmentBytes: 4096, Sync: logstore.SyncNever}), 500)
		l := openLog(t, dir, cfg)
		for i := range 200 {
			mustAppend(t, l, value(i, 50))
		}
		stores := storeFiles(t, dir)
		tix, _ := filepath.Glob(filepath.Join(dir, "*.timeindex"))
		if len(stores) < 4 || len(tix) != len(stores)-1 {
			t.Fatalf("%d stores, time indexes %v: want one per sealed segment", len(stores), tix)
		}
		for i, f := range tix {
			if want := strings.TrimSuffix(stores[i], ".store") + ".timeindex"; f != want {
				t.Fatalf("time index %s, want %s", f, want)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := os.ReadFile(stores[i])
			if err != nil {
				t.Fatal(err)
			}
			base := binary.LittleEndian.Uint64(sb[16:24])
			deltas, pos, err := logstore.DecodeTimeIndex(b, base)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			// The samples: the first record, then each first frame that
			// starts 500 bytes or more after the last sample.
			_, ends := logstore.StoreFrames(sb)
			var wantDeltas, wantPos []uint32
			start := int64(32)
			for k, end := range ends {
				if len(wantPos) == 0 || start >= int64(wantPos[len(wantPos)-1])+500 {
					wantDeltas, wantPos = append(wantDeltas, uint32(k)), append(wantPos, uint32(start))
				}
				start = end
			}
			if len(deltas) < 2 || !slices.Equal(deltas, wantDeltas) || !slices.Equal(pos, wantPos) {
				t.Fatalf("%s: entries %v at %v, want %v at %v", f, deltas, pos, wantDeltas, wantPos)
			}
			if _, _, err := logstore.DecodeTimeIndex(b, base+1); err == nil {
				t.Fatalf("%s accepted for another base", f)
			}
		}
		if err := l.TruncateBefore(1 << 20); err != nil {
			t.Fatal(err)
		}
		if err := l.TruncateFrom(l.Stats().Lowest); err != nil {
			t.Fatal(err)
		}
		if err := l.Reset(7); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*.timeindex*")); len(left) != 0 {
			t.Fatalf("left %v", left)
		}
	})
}

// TestTimeIndexStale: time index files Open must not trust or keep: one
// of the active segment (a crash after a seal, before the next segment
// was created), one without a store, and temporary ones.
func TestTimeIndexStale(t *testing.T) {
	dir := t.TempDir()
	cfg := logstore.WithTimeEvery(logstore.Config{MaxSegmentBytes: 2048, Sync: logstore.SyncNever}, 100)
	l, err := logstore.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_700_000_000, 0)
	for i := range 100 {
		if _, err := l.AppendRecords(t.Context(), []logstore.Record{{Time: start.Add(time.Duration(i) * time.Second), Value: value(i, 40)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	stores := storeFiles(t, dir)
	tixOf := func(store string) string { return strings.TrimSuffix(store, ".store") + ".timeindex" }
	// The active segment gets the first sealed segment's file renamed to
	// its name: wrong base. And a copy of it with the right base would
	// describe other records; Open removes either.
	first, err := os.ReadFile(tixOf(stores[0]))
	if err != nil {
		t.Fatal(err)
	}
	active := tixOf(stores[len(stores)-1])
	for name, b := range map[string][]byte{
		active: first,
		filepath.Join(dir, "00000000000000999999.timeindex"): first,
		tixOf(stores[1]) + ".tmp":                            first[:10],
	} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l = openLog(t, dir, cfg)
	for _, gone := range []string{active, filepath.Join(dir, "00000000000000999999.timeindex"), tixOf(stores[1]) + ".tmp"} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after Open: %v", gone, err)
		}
	}
	for i := range 101 {
		off, err := l.OffsetForTime(t.Context(), start.Add(time.Duration(i)*time.Second-time.Millisecond))
		if err != nil || off != uint64(i) {
			t.Fatalf("OffsetForTime(record %d's time - 1ms) = %d, %v", i, off, err)
		}
	}
}
