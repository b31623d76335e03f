package cluster_test

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// untar extracts a test data directory, hard links included (a snapshot's
// files are links to the store's).
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Clean(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, filepath.Clean(h.Linkname)), path)
		case tar.TypeReg:
			var out *os.File
			if out, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode)); err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpensTheFirstFormat opens a node's data directory written by the
// version before records had keys, headers and times (testdata: proglog
// 8d58054 serving one node, six records snapshotted in two snapshots with
// the first snapshot header, two more only in Raft's log as first-format
// entries, then killed with -9). Every record reads back as it was, with a
// time and no key or headers; new records with keys follow with times that
// do not go back; a restart keeps both. The node keeps a catalogue, which
// starts empty (the old snapshots carry none) and survives the restart.
func TestOpensTheFirstFormat(t *testing.T) {
	dir := t.TempDir()
	untar(t, filepath.Join("testdata", "v1-node-old1.tar.gz"), dir)
	p := newTestPKI(t)
	var ms metas
	n := p.startNode(t, "old1", dir, "", false, ms.opt)
	defer func() { n.stop(t) }()
	waitLeader(t, n)
	old := []string{"before-1-a", "before-1-b", "before-2-a", "before-2-b", "before-3-a", "before-3-b", "after-1", "after-2"}
	waitApplied(t, uint64(len(old)), n)
	recs := allRecords(t, n)
	if len(recs) != len(old) {
		t.Fatalf("%d records, want %d", len(recs), len(old))
	}
	var last time.Time
	for i, r := range recs {
		if string(r.Value) != old[i] || r.Key != nil || r.Headers != nil || r.Time.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("record %d = %+v, want %q with a time and no key or headers", i, r, old[i])
		}
		if r.Time.Before(last) {
			t.Fatalf("record %d's time %v is before the previous one's %v", i, r.Time, last)
		}
		last = r.Time
	}
	fresh := keyedBatch("new", 3)
	base := appendRecordsTo(t, n, fresh)
	if base != uint64(len(old)) {
		t.Fatalf("new records start at %d, want %d", base, len(old))
	}
	for i := range fresh {
		fresh[i].Offset = base + uint64(i)
		got, err := n.log.Read(t.Context(), fresh[i].Offset)
		if err != nil {
			t.Fatal(err)
		}
		if got.Time.Before(last) {
			t.Fatalf("new record's time %v is before the old records' %v", got.Time, last)
		}
		fresh[i].Time = got.Time
	}
	want := append(recs, fresh...)
	sameRecordsOn(t, want, n)
	if got := ms.of("old1").list(); len(got) != 0 {
		t.Fatalf("the upgraded node's catalogue holds %q, want nothing", got)
	}
	if _, err := n.log.ProposeMeta(t.Context(), []byte("create")); err != nil {
		t.Fatal(err)
	}
	catalogue := ms.of("old1").list()

	if err := n.log.Snapshot(); err != nil {
		t.Fatal(err)
	}
	addr := n.port.addr
	n.stop(t)
	n = p.startNode(t, "old1", dir, addr, false, ms.opt)
	waitLeader(t, n)
	waitApplied(t, uint64(len(want)), n)
	sameRecordsOn(t, want, n)
	ms.wait(t, catalogue, n)
	if off, err := n.log.OffsetForTime(t.Context(), fresh[0].Time); err != nil || off > fresh[0].Offset {
		t.Fatalf("OffsetForTime(first new record's time) = %d, %v", off, err)
	}
}
