package logstore_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// TestRecoverySituations sets up the files a crash at each step of creating,
// sealing or deleting a segment can leave, and checks what Open does.
func TestRecoverySituations(t *testing.T) { forFormats(t, testRecoverySituations) }

func testRecoverySituations(t *testing.T, format func(logstore.Config) logstore.Config) {
	cfg := format(logstore.Config{MaxSegmentBytes: 1024})
	sizes := repeat(size8, 24) // 8 per segment: 3 segments
	src := t.TempDir()
	writeLog(t, src, cfg, sizes)
	stores := storeFiles(t, src)
	if len(stores) != 3 {
		t.Fatalf("want 3 segments, have %d", len(stores))
	}
	name := func(i int, ext string) string {
		return strings.TrimSuffix(filepath.Base(stores[i]), ".store") + ext
	}
	write := func(t *testing.T, path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		corrupt bool   // Open must fail with ErrCorrupt
		lowest  uint64 // expected lowest offset after Open
		next    uint64
		logged  string // expected in the log output
	}{
		{
			name:   "clean",
			damage: func(t *testing.T, dir string) {},
			next:   24,
		},
		{
			name: "index left behind by an interrupted delete",
			damage: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, name(0, ".store")))
			},
			lowest: 8, next: 24, logged: "index without store",
		},
		{
			name: "new active store with a torn header",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "00000000000000000024.store"), make([]byte, 10))
			},
			next: 24, logged: "rewriting the header",
		},
		{
			name: "new active store with the start of its header",
			damage: func(t *testing.T, dir string) {
				// The magic, which starts every store header whatever its base.
				b, err := os.ReadFile(filepath.Join(dir, name(0, ".store")))
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, "00000000000000000024.store"), b[:8])
			},
			next: 24, logged: "rewriting the header",
		},
		{
			name: "new active store that is empty, index never created",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "00000000000000000024.store"), nil)
			},
			next: 24, logged: "rewriting the header",
		},
		{
			name: "sealed index missing",
			damage: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, name(1, ".index")))
			},
			next: 24, logged: "rebuilt the index",
		},
		{
			name: "sealed index never trimmed",
			damage: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, name(0, ".index")), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write(make([]byte, 64<<10))
				f.Close()
			},
			next: 24, logged: "rebuilt the index",
		},
		{
			name: "leftover index rebuild",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, name(0, ".index.tmp")), []byte("junk"))
			},
			next: 24,
		},
		{
			name: "active index garbage is ignored",
			damage: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, name(2, ".index")), bytes.Repeat([]byte{0xff}, 100))
			},
			next: 24,
		},
		{
			name: "sealed store header damaged",
			damage: func(t *testing.T, dir string) {
				f, _ := os.OpenFile(filepath.Join(dir, name(1, ".store")), os.O_WRONLY, 0)
				f.WriteAt([]byte("XX"), 0)
				f.Close()
			},
			corrupt: true,
		},
		{
			name: "segment missing in the middle",
			damage: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, name(1, ".store")))
				os.Remove(filepath.Join(dir, name(1, ".index")))
			},
			corrupt: true,
		},
		{
			name: "sealed store cut short with its index rebuilt",
			damage: func(t *testing.T, dir string) {
				os.Truncate(filepath.Join(dir, name(0, ".store")), 500)
			},
			corrupt: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := logstore.CopyLogDir(t, src)
			tc.damage(t, dir)
			var logs bytes.Buffer
			c := cfg
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			l, err := logstore.Open(dir, c)
			if tc.corrupt {
				if !errors.Is(err, logstore.ErrCorrupt) {
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if !strings.Contains(logs.String(), tc.logged) {
				t.Fatalf("log output %q lacks %q", logs.String(), tc.logged)
			}
			lo, next := l.Bounds()
			if lo != tc.lowest || next != tc.next {
				t.Fatalf("Bounds = %d, %d; want %d, %d", lo, next, tc.lowest, tc.next)
			}
			for off := lo; off < next; off++ {
				checkRecord(t, l, off, value(int(off), size8))
			}
			if off := mustAppend(t, l, []byte("more")); off != next {
				t.Fatalf("append got %d, want %d", off, next)
			}
			if _, err := os.Stat(filepath.Join(dir, name(0, ".index.tmp"))); err == nil {
				t.Fatal("leftover .index.tmp not removed")
			}
		})
	}
}
