package acl

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// File is a Policy loaded from a file and reloaded when the file changes.
// Readers never block: the current policy sits behind an atomic pointer.
type File struct {
	path   string
	logger *slog.Logger
	policy atomic.Pointer[Policy]

	mu     sync.Mutex // guards seen and hinted, and serializes Reload
	seen   fileStamp  // the stamp of the last version read, good or bad
	hinted bool       // the legacy "log" object was explained once
}

// fileStamp identifies one version of the file well enough to notice edits.
type fileStamp struct {
	modTime time.Time
	size    int64
	ino     uint64
}

// NewFile loads the policy at path. It fails if the file is missing or
// invalid: a server must not start with a policy it cannot read.
func NewFile(path string, logger *slog.Logger) (*File, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &File{path: path, logger: logger}
	st, err := stamp(path)
	if err != nil {
		return nil, err
	}
	p, err := Load(path)
	if err != nil {
		return nil, err
	}
	f.store(p)
	f.seen = st
	return f, nil
}

// store puts p in force and, the first time a policy uses the legacy
// object "log", says once what it means.
func (f *File) store(p *Policy) {
	f.policy.Store(p)
	if p.legacyLog && !f.hinted {
		f.hinted = true
		f.logger.Info(`acl: the object "log" means the topic "default"; write "default" (or a topic, glob or "*") in new rules`, "path", f.path)
	}
}

// Policy returns the policy in force.
func (f *File) Policy() *Policy { return f.policy.Load() }

// Allowed is Policy.Allowed of the policy in force.
func (f *File) Allowed(subject, topic, action string) bool {
	return f.policy.Load().Allowed(subject, topic, action)
}

// AllowedAny is Policy.AllowedAny of the policy in force.
func (f *File) AllowedAny(subject, action string) bool {
	return f.policy.Load().AllowedAny(subject, action)
}

// AllowedCluster is Policy.AllowedCluster of the policy in force.
func (f *File) AllowedCluster(subject, action string) bool {
	return f.policy.Load().AllowedCluster(subject, action)
}

// Actions is Policy.Actions of the policy in force.
func (f *File) Actions(subject string) []string { return f.policy.Load().Actions(subject) }

// ActionsOn is Policy.ActionsOn of the policy in force.
func (f *File) ActionsOn(subject, topic string) []string {
	return f.policy.Load().ActionsOn(subject, topic)
}

// Reload re-reads the file if it changed since the last look. It reports
// whether a new policy took effect. On error the old policy stays in force,
// and the same broken version is not reported again.
func (f *File) Reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := stamp(f.path)
	if err != nil {
		return false, err
	}
	if st == f.seen {
		return false, nil
	}
	f.seen = st
	p, err := Load(f.path)
	if err != nil {
		return false, err
	}
	f.store(p)
	return true, nil
}

// Run polls the file every interval until ctx is done, swapping in each
// valid new version and logging (once per version) any that fails to parse.
func (f *File) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string // suppresses repeats of an unchanged failure (e.g. file deleted)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := f.Reload()
		switch {
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				f.logger.Error("acl reload failed; keeping the previous policy", "path", f.path, "err", err)
			}
		case changed:
			lastErr = ""
			f.logger.Info("acl reloaded", "path", f.path, "rules", f.policy.Load().Len())
		}
	}
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("acl: %w", err)
	}
	st := fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino // a rename over the file (the safe way to edit it) changes the inode
	}
	return st, nil
}
