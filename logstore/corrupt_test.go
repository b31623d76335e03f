package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/proglog/proglog/logstore"
)

const headerLen = 32

func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.store"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func writeLog(t *testing.T, dir string, cfg logstore.Config, sizes []int) {
	t.Helper()
	l, err := logstore.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		mustAppend(t, l, value(i, n))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, err error, file string) *logstore.CorruptError {
	t.Helper()
	var ce *logstore.CorruptError
	if !errors.Is(err, logstore.ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if file != "" && ce.Path != file {
		t.Fatalf("corruption reported in %s, want %s", ce.Path, file)
	}
	return ce
}

// TestTornTail cuts the active store at every byte of its last record: Open
// drops exactly that record, and the log takes appends again at its offset.
func TestTornTail(t *testing.T) { forFormats(t, testTornTail) }

func testTornTail(t *testing.T, format func(logstore.Config) logstore.Config) {
	sizes := []int{10, 100, 37}
	src := t.TempDir()
	cfg := format(logstore.Config{})
	writeLog(t, src, cfg, sizes)
	store := storeFiles(t, src)[0]
	lastStart := int64(headerLen) + logstore.FrameSize(cfg, 10) + logstore.FrameSize(cfg, 100)
	end := lastStart + logstore.FrameSize(cfg, 37)
	for cut := lastStart; cut < end; cut++ {
		dir := logstore.CopyLogDir(t, src)
		if err := os.Truncate(filepath.Join(dir, filepath.Base(store)), cut); err != nil {
			t.Fatal(err)
		}
		l, err := logstore.Open(dir, logstore.Config{})
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", cut, err)
		}
		if _, next := l.Bounds(); next != 2 {
			t.Fatalf("cut at %d: next %d, want 2", cut, next)
		}
		broken, err := os.ReadFile(filepath.Join(dir, filepath.Base(store)+".broken"))
		if cut > lastStart && (err != nil || int64(len(broken)) != cut-lastStart) {
			t.Fatalf("cut at %d: .broken copy has %d bytes (%v), want %d", cut, len(broken), err, cut-lastStart)
		}
		checkRecord(t, l, 0, value(0, 10))
		checkRecord(t, l, 1, value(1, 100))
		if off := mustAppend(t, l, []byte("after")); off != 2 {
			t.Fatalf("cut at %d: append got offset %d", cut, off)
		}
		l.Close()
		l = openLog(t, dir, logstore.Config{})
		checkRecord(t, l, 2, []byte("after"))
		l.Close()
	}
}

// TestZeroSector zeroes a 512-byte sector: at the tail of the active segment
// it is a torn tail; in its middle Open refuses with the position; in a
// sealed segment only the records it covers fail to read.
func TestZeroSector(t *testing.T) { forFormats(t, testZeroSector) }

func testZeroSector(t *testing.T, format func(logstore.Config) logstore.Config) {
	cfg := format(logstore.Config{MaxSegmentBytes: 4096})
	sizes := repeat(100, 60)
	frame := logstore.FrameSize(cfg, 100)                     // 128 bytes in v1, 120 in v2
	perSegment := int((4096 - headerLen + frame - 1) / frame) // 32 in v1, 34 in v2
	src := t.TempDir()
	writeLog(t, src, cfg, sizes)
	stores := storeFiles(t, src)
	if len(stores) < 2 {
		t.Fatalf("want a sealed segment, have %d stores", len(stores))
	}
	active := filepath.Base(stores[len(stores)-1])
	sealed := filepath.Base(stores[0])
	activeInfo, _ := os.Stat(stores[len(stores)-1])

	zero := func(t *testing.T, dir, file string, at int64) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, file), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(make([]byte, 512), at); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("active tail", func(t *testing.T) {
		dir := logstore.CopyLogDir(t, src)
		at := activeInfo.Size() - 512
		zero(t, dir, active, at)
		l := openLog(t, dir, cfg)
		// The records that end before the sector stay.
		want := uint64(len(stores)-1)*uint64(perSegment) + uint64((at-headerLen)/frame)
		if _, next := l.Bounds(); next != want {
			t.Fatalf("next %d, want %d", next, want)
		}
		for i := range int(want) {
			checkRecord(t, l, uint64(i), value(i, 100))
		}
	})
	t.Run("active middle", func(t *testing.T) {
		if activeInfo.Size() < headerLen+3*512 {
			t.Skip("active segment too small")
		}
		dir := logstore.CopyLogDir(t, src)
		zero(t, dir, active, 512)
		_, err := logstore.Open(dir, cfg)
		ce := wantCorrupt(t, err, filepath.Join(dir, active))
		if ce.Pos < 512-frame || ce.Pos >= 1024 {
			t.Fatalf("corruption at %d, want within the zeroed sector", ce.Pos)
		}
	})
	t.Run("sealed", func(t *testing.T) {
		dir := logstore.CopyLogDir(t, src)
		zero(t, dir, sealed, 1024)
		l := openLog(t, dir, cfg)
		_, next := l.Bounds()
		if next != 60 {
			t.Fatalf("next %d, want 60", next)
		}
		bad := 0
		for i := range 60 {
			rec, err := l.Read(context.Background(), uint64(i))
			start := headerLen + int64(i)*frame
			hit := start < 1024+512 && start+frame > 1024 && i < perSegment
			if hit {
				wantCorrupt(t, err, filepath.Join(dir, sealed))
				bad++
				continue
			}
			if err != nil || !bytes.Equal(rec.Value, value(i, 100)) {
				t.Fatalf("Read(%d) = %q, %v", i, rec.Value, err)
			}
		}
		if bad == 0 {
			t.Fatal("no record reported corrupt")
		}
		// A batch that runs into the damage fails rather than stopping short silently.
		if _, err := l.ReadBatch(context.Background(), 0, 100, 0, nil); !errors.Is(err, logstore.ErrCorrupt) {
			t.Fatalf("ReadBatch across damage: %v", err)
		}
	})
}

// TestFlipEveryByteOfSealedSegment damages each byte of a sealed segment's
// store and index in turn. Whatever happens, no wrong record is served:
// Open either fails with ErrCorrupt or succeeds, and then every read returns
// the original bytes or ErrCorrupt.
func TestFlipEveryByteOfSealedSegment(t *testing.T) { forFormats(t, testFlipEveryByteOfSealedSegment) }

func testFlipEveryByteOfSealedSegment(t *testing.T, format func(logstore.Config) logstore.Config) {
	cfg := format(logstore.Config{MaxSegmentBytes: 1024, Sync: logstore.SyncNever})
	sizes := []int{0, 5, 60, 17, 100, 3, 200, 9, 90, 40, 33, 70, 12, 150, 8, 61}
	src := t.TempDir()
	writeLog(t, src, cfg, sizes)
	stores := storeFiles(t, src)
	if len(stores) < 2 {
		t.Fatal("want a sealed segment")
	}
	targets := []string{filepath.Base(stores[0]), strings.TrimSuffix(filepath.Base(stores[0]), ".store") + ".index"}
	for _, file := range targets {
		orig, err := os.ReadFile(filepath.Join(src, file))
		if err != nil {
			t.Fatal(err)
		}
		corrupted, opened := 0, 0
		for at := range orig {
			dir := logstore.CopyLogDir(t, src)
			b := slices.Clone(orig)
			b[at] ^= 1 << (at % 8)
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := logstore.Open(dir, cfg)
			if err != nil {
				wantCorrupt(t, err, "")
				if strings.HasSuffix(file, ".store") && at >= headerLen {
					t.Fatalf("store byte %d: Open failed on damage that only reads should report: %v", at, err)
				}
				continue
			}
			opened++
			_, next := l.Bounds()
			if next != uint64(len(sizes)) {
				t.Fatalf("%s byte %d: next %d", file, at, next)
			}
			for i, n := range sizes {
				rec, err := l.Read(context.Background(), uint64(i))
				if err != nil {
					wantCorrupt(t, err, "")
					corrupted++
					continue
				}
				if !bytes.Equal(rec.Value, value(i, n)) {
					t.Fatalf("%s byte %d: Read(%d) served %q", file, at, i, rec.Value)
				}
			}
			l.Close()
		}
		t.Logf("%s: %d bytes flipped, %d opens, %d corrupt reads", file, len(orig), opened, corrupted)
	}
}
