package logstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestReadHeads: ReadHeads agrees with ReadBatch on every record's value
// length and first bytes, in both formats, across segments, for small
// records (read whole and checked), large ones (only their start read)
// and keyed ones of both sizes; prefixes longer than the value and empty
// ones; any batch size.
func TestReadHeads(t *testing.T) {
	forFormats(t, func(t *testing.T, format func(logstore.Config) logstore.Config) {
		l := openLog(t, t.TempDir(), format(logstore.Config{MaxSegmentBytes: 256 << 10, MaxRecordBytes: 1 << 20}))
		sizes := []int{0, 10, 100, 5000, 40 << 10, 100 << 10, 31 << 10, 33 << 10, 7}
		var recs []logstore.Record
		for i := range 60 {
			r := logstore.Record{Value: value(i, sizes[i%len(sizes)])}
			if i%5 == 3 {
				r.Key = []byte("k")
				r.Headers = []logstore.Header{{Key: "h", Value: []byte("v")}}
			}
			recs = append(recs, r)
		}
		for i := range recs {
			if _, err := l.AppendRecords(t.Context(), recs[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(l.Bases()); n < 3 {
			t.Fatalf("%d segments; the test wants several", n)
		}
		for _, tc := range []struct{ batch, prefix int }{{1, 0}, {7, 16}, {1000, 64}, {3, 200 << 10}} {
			var heads []logstore.Head
			for at := uint64(0); at < uint64(len(recs)); {
				got, err := l.ReadHeads(t.Context(), at, tc.batch, tc.prefix, nil)
				if err != nil {
					t.Fatalf("ReadHeads(%d, %d, %d): %v", at, tc.batch, tc.prefix, err)
				}
				if len(got) == 0 || len(got) > tc.batch {
					t.Fatalf("ReadHeads(%d, %d) returned %d heads", at, tc.batch, len(got))
				}
				heads = append(heads, got...)
				at += uint64(len(got))
			}
			for i, h := range heads {
				v := recs[i].Value
				want := v[:min(tc.prefix, len(v))]
				if h.Offset != uint64(i) || h.ValueLen != len(v) || !bytes.Equal(h.Prefix, want) {
					t.Fatalf("prefix %d: head %d = offset %d, %d bytes, prefix %q; want %d bytes, prefix %q", tc.prefix, i, h.Offset, h.ValueLen, h.Prefix, len(v), want)
				}
				big := len(v) >= 32<<10 && recs[i].Key == nil // frames of 32 KiB and up
				if h.Checked == big {
					t.Fatalf("head %d (%d bytes, keyed %v): Checked %v", i, len(v), recs[i].Key != nil, h.Checked)
				}
			}
		}
		if _, err := l.ReadHeads(t.Context(), uint64(len(recs)), 1, 8, nil); !errors.Is(err, logstore.ErrOutOfRange) {
			t.Fatalf("ReadHeads past the end: %v", err)
		}
	})
}

// TestReadHeadsDamage: a flipped byte in a small record's value is caught
// (its frame is read whole); in a large record's value it is not (only its
// start is read: Checked is false), and reading the record catches it; a
// flipped byte in a large frame's fixed part is caught.
func TestReadHeadsDamage(t *testing.T) {
	dir := t.TempDir()
	small, big := value(0, 100), value(1, 64<<10)
	// The first two records fill a sealed segment: Open checks every frame
	// of the active one, not of sealed ones.
	cfg := logstore.Config{MaxSegmentBytes: 64 << 10}
	func() {
		l := openLog(t, dir, cfg)
		mustAppend(t, l, small)
		mustAppend(t, l, big)
		mustAppend(t, l, small) // starts the next segment
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	store := filepath.Join(dir, "00000000000000000000.store")
	orig, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	smallAt := bytes.Index(orig, small)
	bigAt := bytes.Index(orig, big[:32])
	for _, tc := range []struct {
		name   string
		at     int
		offset uint64
		caught bool // by ReadHeads
	}{
		{"small value", smallAt + 50, 0, true},
		{"large value", bigAt + 40<<10, 1, false},
		{"large frame's length", bigAt - 20 + 1, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			b[tc.at] ^= 0x40
			if err := os.WriteFile(store, b, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(store, orig, 0o644)
			l, err := logstore.Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			heads, err := l.ReadHeads(t.Context(), tc.offset, 1, 16, nil)
			switch {
			case tc.caught && err == nil:
				t.Fatalf("ReadHeads read damaged record %d: %+v", tc.offset, heads)
			case tc.caught:
				var ce *logstore.CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("ReadHeads: %v, want a CorruptError", err)
				}
			case err != nil:
				t.Fatalf("ReadHeads: %v", err)
			case heads[0].Checked:
				t.Fatal("a large record's head says its checksum was checked")
			default:
				if _, err := l.Read(t.Context(), tc.offset); !errors.Is(err, logstore.ErrCorrupt) {
					t.Fatalf("Read of the damaged record: %v, want ErrCorrupt", err)
				}
			}
		})
	}
}
