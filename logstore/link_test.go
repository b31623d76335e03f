package logstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// linkedStream reads the files Link made, each up to its Size, in order.
func linkedStream(t *testing.T, dir string, files []logstore.LinkedFile) []byte {
	t.Helper()
	var out []byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) < f.Size {
			t.Fatalf("%s has %d bytes, linked %d", f.Name, len(b), f.Size)
		}
		out = append(out, b[:f.Size]...)
	}
	return out
}

// TestLink links the log in several states and checks that the linked files
// restore to exactly the records it held, after the log went on: more
// appends, retention of everything linked, a truncation at the linked
// point and a reset.
func TestLink(t *testing.T) {
	cfg := logstore.Config{MaxSegmentBytes: 2048}
	tests := []struct {
		name    string
		records int
		before  uint64 // TruncateBefore before Link
		policy  logstore.SyncPolicy
	}{
		{name: "empty log", records: 0},
		{name: "one partial segment", records: 5},
		{name: "several segments", records: 40},
		{name: "after retention", records: 40, before: 20},
		{name: "sync never", records: 40, policy: logstore.SyncNever},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := cfg
			cfg.Sync = tt.policy
			l := openLog(t, dir, cfg)
			for i := range tt.records {
				mustAppend(t, l, value(i, 100+i))
			}
			if tt.before > 0 {
				if err := l.TruncateBefore(tt.before); err != nil {
					t.Fatal(err)
				}
			}
			wantLowest, wantNext := l.Bounds()
			snap := t.TempDir()
			lowest, next, files, err := l.Link(snap)
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
			if lowest != wantLowest || next != wantNext {
				t.Fatalf("Link = [%d, %d), want [%d, %d)", lowest, next, wantLowest, wantNext)
			}
			// The log goes on.
			for i := tt.records; i < tt.records+30; i++ {
				mustAppend(t, l, value(i, 100+i))
			}
			if err := l.TruncateFrom(next); err != nil {
				t.Fatal(err)
			}
			for i := tt.records; i < tt.records+30; i++ {
				mustAppend(t, l, value(i, 100+i))
			}
			if err := l.TruncateBefore(next + 20); err != nil {
				t.Fatal(err)
			}
			if err := l.Reset(1000); err != nil {
				t.Fatal(err)
			}

			dst := filepath.Join(t.TempDir(), "restored")
			if err := logstore.Restore(dst, bytes.NewReader(linkedStream(t, snap, files))); err != nil {
				t.Fatalf("Restore from links: %v", err)
			}
			r := openLog(t, dst, cfg)
			if rlo, rnext := r.Bounds(); rlo != lowest || rnext != next {
				t.Fatalf("restored bounds [%d, %d), want [%d, %d)", rlo, rnext, lowest, next)
			}
			for off := lowest; off < next; off++ {
				checkRecord(t, r, off, value(int(off), 100+int(off)))
			}
		})
	}
}

func TestLinkClosed(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{})
	l.Close()
	if _, _, _, err := l.Link(t.TempDir()); !errors.Is(err, logstore.ErrClosed) {
		t.Errorf("Link after Close = %v, want ErrClosed", err)
	}
}

// TestLinkMatchesReader: the linked files are the Reader's stream.
func TestLinkMatchesReader(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 2048})
	for i := range 30 {
		mustAppend(t, l, value(i, 100))
	}
	var want bytes.Buffer
	if _, err := want.ReadFrom(l.Reader()); err != nil {
		t.Fatal(err)
	}
	snap := t.TempDir()
	_, _, files, err := l.Link(snap)
	if err != nil {
		t.Fatal(err)
	}
	if got := linkedStream(t, snap, files); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("linked files hold %d bytes, the Reader %d", len(got), want.Len())
	}
}

func TestVerify(t *testing.T) {
	l := openLog(t, t.TempDir(), logstore.Config{MaxSegmentBytes: 2048})
	for i := range 30 {
		mustAppend(t, l, value(i, 100))
	}
	var snap bytes.Buffer
	if _, err := snap.ReadFrom(l.Reader()); err != nil {
		t.Fatal(err)
	}
	good := snap.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"whole", good, nil},
		{"a flipped byte", flipped, logstore.ErrCorrupt},
		{"cut short", good[:len(good)-5], logstore.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := logstore.Verify(bytes.NewReader(tt.stream)); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}
