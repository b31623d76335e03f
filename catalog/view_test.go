package catalog

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"
)

func TestViewQueries(t *testing.T) {
	c := fixture(t) // orders: [a b] [b c]
	c.Apply(6, t0, create("clicks", 1, []string{"c"}, []string{"a"}, []string{"c"}))
	v := c.View()

	var names []string
	for _, tp := range v.Topics() {
		names = append(names, tp.Name)
	}
	if want := []string{"clicks", "default", "orders"}; !equalStrings(names, want) {
		t.Errorf("Topics() = %q, want %q", names, want)
	}
	hosted := map[string][]string{}
	for _, id := range []string{"a", "b", "c", "z"} {
		for _, r := range v.Hosted(id) {
			hosted[id] = append(hosted[id], r.Group())
		}
	}
	want := map[string][]string{"a": {"t6.p1", "t5.p0"}, "b": {"t5.p0", "t5.p1"}, "c": {"t6.p0", "t6.p2", "t5.p1"}}
	if !maps.EqualFunc(hosted, want, equalStrings) {
		t.Errorf("Hosted = %q, want %q", hosted, want)
	}
	if got, want := v.Load(), map[string]int{"a": 2, "b": 2, "c": 3}; !maps.Equal(got, want) {
		t.Errorf("Load() = %v, want %v", got, want)
	}
	if got, want := v.Leaders(), map[string]int{"a": 2, "b": 1, "c": 2}; !maps.Equal(got, want) {
		t.Errorf("Leaders() = %v, want %v", got, want)
	}
	// Topics hands out its own slice: reordering it changes no view.
	ts := v.Topics()
	ts[0], ts[1] = ts[1], ts[0]
	if v.Topics()[0].Name != "clicks" {
		t.Error("Topics() shares its slice")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChanged(t *testing.T) {
	c := New()
	ch, v := c.Changed(), c.View()
	if closed(ch) || v.Changed() != ch {
		t.Fatal("fresh catalogue reports a change")
	}
	c.Apply(1, t0, EncodeDelete("nope")) // refused: the index still moves
	if !closed(ch) || closed(c.Changed()) {
		t.Fatal("Apply did not close the channel, or the new one is closed")
	}
	ch = c.Changed()
	if err := c.Restore(nil); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("Restore did not close the channel")
	}
	ch = c.Changed()
	if err := c.Restore([]byte("junk")); !errors.Is(err, ErrInvalid) || closed(ch) {
		t.Fatalf("Restore(junk) = %v, closed %t", err, closed(ch))
	}
}

func TestWaitIndex(t *testing.T) {
	c := New()
	if err := c.WaitIndex(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := c.WaitIndex(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIndex past the end = %v", err)
	}

	done := make(chan error)
	go func() { done <- c.WaitIndex(context.Background(), 3) }()
	for i := uint64(1); i <= 2; i++ {
		c.Apply(i, t0, create("t", 1, []string{"a"}))
	}
	select {
	case err := <-done:
		t.Fatalf("WaitIndex(3) returned at index 2: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	c.Apply(5, t0, EncodeDelete("t")) // indexes may skip (other entries)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Readers run while Apply and Restore do (go test -race).
func TestConcurrentReaders(t *testing.T) {
	c := New()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-c.Changed():
				}
				v := c.View()
				for _, tp := range v.Topics() {
					_ = tp.Partitions[0].Replicas
				}
				_ = v.Hosted("a")
				_ = v.Load()
			}
		})
	}
	for i := uint64(1); i <= 200; i++ {
		c.Apply(2*i, t0, create("t", 1, []string{"a"}))
		c.Apply(2*i+1, t0, EncodeDelete("t"))
		if i%50 == 0 {
			snap, _ := c.Snapshot()
			if err := c.Restore(snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}
