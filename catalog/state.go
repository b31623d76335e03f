package catalog

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Catalog is the replicated catalogue: the system group's MetaFSM. Raft
// calls Apply, Snapshot and Restore from its FSM goroutine; anyone may
// call View, Changed and WaitIndex meanwhile.
type Catalog struct {
	mu   sync.Mutex // serialises Apply and Restore
	view atomic.Pointer[View]
}

// New returns a catalogue in the initial state: the default topic alone.
func New() *Catalog {
	c := new(Catalog)
	c.view.Store(initialView())
	return c
}

// View returns the catalogue as of the last applied command.
func (c *Catalog) View() *View { return c.view.Load() }

// Changed returns a channel closed at the next change. Take it before the
// View it goes with (or use View.Changed) to miss none.
func (c *Catalog) Changed() <-chan struct{} { return c.View().changed }

// WaitIndex waits until the catalogue has applied the command at index or
// a later one, or ctx ends. Only catalogue commands move Index: waiting
// for the index of another system-group entry (a record of the default
// topic) lasts until the next catalogue command.
func (c *Catalog) WaitIndex(ctx context.Context, index uint64) error {
	for {
		v := c.View()
		if v.index >= index {
			return nil
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Apply applies the command committed at index, proposed at at, and
// returns its Result. A refused command changes nothing but Index.
// Indexes must grow from call to call, as Raft's do.
func (c *Catalog) Apply(index uint64, at time.Time, cmd []byte) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, res := c.View().apply(index, at, cmd)
	c.publish(v)
	return res
}

// Snapshot returns the state's encoding. It copies nothing: the view it
// encodes never changes.
func (c *Catalog) Snapshot() ([]byte, error) { return encodeView(c.View()), nil }

// Restore replaces the state with a snapshot's; nil or empty is the
// initial state. Bytes that do not decode (ErrInvalid) change nothing.
func (c *Catalog) Restore(state []byte) error {
	v := initialView()
	if len(state) > 0 {
		var err error
		if v, err = decodeView(state); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publish(v)
	return nil
}

// publish makes v current, then wakes those waiting on the old view.
func (c *Catalog) publish(v *View) { close(c.view.Swap(v).changed) }
