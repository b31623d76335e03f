package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/proglog/proglog/logstore"
)

// snapshotStore keeps Raft's snapshots in <raft>/snapshots, a directory
// each with meta.json and state.bin, as hashicorp/raft's FileSnapshotStore
// lays them out (so the directories it wrote still open). A snapshot the
// node takes of its own store holds only the 40-byte header in state.bin
// and hard links to the store's segment files, each read up to the size
// the manifest in meta.json gives (logstore.Link): taking it writes no
// record, and the links keep the files' bytes while retention deletes the
// store's own names for them. A snapshot received from a leader, or given
// to raft.Restore, is the whole stream in state.bin.
type snapshotStore struct {
	dir    string
	retain int
	logger *slog.Logger
	mu     sync.Mutex // serialises reaping
	// onCorrupt hears of a damaged record found while a snapshot is read
	// (Open checks every frame on the way out).
	onCorrupt func(error)
}

// snapshotMeta is meta.json: FileSnapshotStore's fields plus the linked files.
type snapshotMeta struct {
	raft.SnapshotMeta
	// Files are read after state.bin, in order, each up to its Size.
	Files []logstore.LinkedFile `json:",omitempty"`
}

const (
	snapshotsDir  = "snapshots"
	snapMetaFile  = "meta.json"
	snapStateFile = "state.bin"
	tmpSuffix     = ".tmp"
)

var _ raft.SnapshotStore = (*snapshotStore)(nil)

// openSnapshotStore opens <raftDir>/snapshots, removing what a crash left
// half made (directories ending in .tmp).
func openSnapshotStore(raftDir string, retain int, logger *slog.Logger, onCorrupt func(error)) (*snapshotStore, error) {
	dir := filepath.Join(raftDir, snapshotsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("cluster: snapshots: remove unfinished %s: %w", e.Name(), err)
			}
		}
	}
	return &snapshotStore{dir: dir, retain: retain, logger: logger, onCorrupt: onCorrupt}, nil
}

// staging makes an empty directory for logstore.Link to put a snapshot's
// files in before raft creates the snapshot (see fsm.Snapshot).
func (s *snapshotStore) staging() (string, error) {
	return os.MkdirTemp(s.dir, "staging-*"+tmpSuffix)
}

func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version < raft.SnapshotVersionMin || version > raft.SnapshotVersionMax {
		return nil, fmt.Errorf("cluster: snapshot version %d not supported", version)
	}
	name := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	dir := filepath.Join(s.dir, name+tmpSuffix)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: create snapshot: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, snapStateFile))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cluster: create snapshot: %w", err)
	}
	return &snapshotSink{
		store: s, dir: dir, state: f, w: bufio.NewWriterSize(f, 64<<10),
		meta: snapshotMeta{SnapshotMeta: raft.SnapshotMeta{
			Version: version, ID: name, Index: index, Term: term,
			Configuration: configuration, ConfigurationIndex: configurationIndex,
		}},
	}, nil
}

// List returns the retained snapshots, newest first.
func (s *snapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.all()
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for _, m := range metas[:min(len(metas), s.retain)] {
		out = append(out, &m.SnapshotMeta)
	}
	return out, nil
}

// all reads every finished snapshot's meta, newest first.
func (s *snapshotStore) all() ([]*snapshotMeta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: list snapshots: %w", err)
	}
	var metas []*snapshotMeta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		m, err := s.readMeta(e.Name())
		if err != nil {
			s.logger.Warn("cluster: skipping an unreadable snapshot", "name", e.Name(), "err", err)
			continue
		}
		if m.Version < raft.SnapshotVersionMin || m.Version > raft.SnapshotVersionMax {
			s.logger.Warn("cluster: skipping a snapshot of an unknown version", "name", e.Name(), "version", m.Version)
			continue
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *snapshotMeta) int {
		switch {
		case a.Term != b.Term:
			return cmpDesc(a.Term, b.Term)
		case a.Index != b.Index:
			return cmpDesc(a.Index, b.Index)
		}
		return strings.Compare(b.ID, a.ID)
	})
	return metas, nil
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

func (s *snapshotStore) readMeta(name string) (*snapshotMeta, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name, snapMetaFile))
	if err != nil {
		return nil, err
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", snapMetaFile, err)
	}
	if m.ID != name {
		return nil, fmt.Errorf("%s names snapshot %q", snapMetaFile, m.ID)
	}
	return &m, nil
}

// Open returns the snapshot's stream: state.bin, then each linked file up
// to its size. Nothing is read until the caller reads (a restart whose store
// already holds the snapshot reads only the header). The frames carry their
// own CRCs, which logstore.Restore checks.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: open snapshot %s: %w", id, err)
	}
	dir := filepath.Join(s.dir, id)
	var files multiCloser
	fail := func(err error) (*raft.SnapshotMeta, io.ReadCloser, error) {
		files.Close()
		return nil, nil, fmt.Errorf("cluster: open snapshot %s: %w", id, err)
	}
	state, err := os.Open(filepath.Join(dir, snapStateFile))
	if err != nil {
		return fail(err)
	}
	files = append(files, state)
	br := bufio.NewReaderSize(state, 64<<10)
	head, _ := br.Peek(36) // a short or unknown header fails in readSnapHeader
	readers := []io.Reader{br}
	for _, lf := range m.Files {
		f, err := os.Open(filepath.Join(dir, lf.Name))
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
		fi, err := f.Stat()
		if err != nil {
			return fail(err)
		}
		if fi.Size() < lf.Size {
			return fail(fmt.Errorf("%w: %s has %d bytes, the snapshot needs %d", logstore.ErrCorrupt, lf.Name, fi.Size(), lf.Size))
		}
		readers = append(readers, io.NewSectionReader(f, 0, lf.Size))
	}
	return &m.SnapshotMeta, newVerifiedStream(io.MultiReader(readers...), snapHeaderLen(head), files, s.onCorrupt), nil
}

type multiCloser []*os.File

func (m multiCloser) Close() error {
	var errs []error
	for _, f := range m {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// reap deletes all but the newest retain snapshots. A linked segment's
// bytes go when the last link to them does (the store's, or a snapshot's).
func (s *snapshotStore) reap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas, err := s.all()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range metas[min(len(metas), s.retain):] {
		if err := os.RemoveAll(filepath.Join(s.dir, m.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// snapshotSink writes a snapshot into <name>.tmp and renames it into place
// on Close, so a crash leaves the whole snapshot or none.
type snapshotSink struct {
	store  *snapshotStore
	dir    string
	state  *os.File
	w      *bufio.Writer
	n      int64 // bytes written to state.bin
	meta   snapshotMeta
	closed bool
}

func (s *snapshotSink) ID() string { return s.meta.ID }

func (s *snapshotSink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

// link moves files that logstore.Link put in staging into the snapshot,
// to be read after what was written.
func (s *snapshotSink) link(staging string, files []logstore.LinkedFile) error {
	for _, f := range files {
		if err := os.Rename(filepath.Join(staging, f.Name), filepath.Join(s.dir, f.Name)); err != nil {
			return fmt.Errorf("cluster: snapshot: %w", err)
		}
	}
	s.meta.Files = append(s.meta.Files, files...)
	return nil
}

func (s *snapshotSink) Cancel() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.state.Close()
	return os.RemoveAll(s.dir)
}

// Close makes the snapshot durable and visible: state.bin and meta.json
// fsynced, the directory renamed into place, older snapshots reaped.
func (s *snapshotSink) Close() (err error) {
	if s.closed {
		return nil
	}
	s.closed = true
	defer func() {
		if err != nil {
			s.state.Close()
			os.RemoveAll(s.dir)
			err = fmt.Errorf("cluster: finish snapshot %s: %w", s.meta.ID, err)
		}
	}()
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.state.Sync(); err != nil {
		return err
	}
	if err := s.state.Close(); err != nil {
		return err
	}
	s.meta.Size = s.n
	for _, f := range s.meta.Files {
		s.meta.Size += f.Size
	}
	b, err := json.Marshal(s.meta)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(s.dir, snapMetaFile), b); err != nil {
		return err
	}
	final := strings.TrimSuffix(s.dir, tmpSuffix)
	if err := os.Rename(s.dir, final); err != nil {
		return err
	}
	if err := syncDir(s.store.dir); err != nil {
		return err
	}
	if err := s.store.reap(); err != nil {
		s.store.logger.Warn("cluster: deleting old snapshots", "err", err)
	}
	return nil
}
