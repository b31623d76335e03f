package bufpool

import "testing"

func TestPool(t *testing.T) {
	p := &Pool{Max: 1 << 10}
	b := p.Get(100)
	if len(*b) != 0 || cap(*b) < 100 {
		t.Fatalf("Get(100) = len %d cap %d", len(*b), cap(*b))
	}
	*b = append(*b, "dirty"...)
	p.Put(b)
	// Whatever comes back is empty and big enough, reused or not.
	for _, size := range []int{10, 100, 1000} {
		got := p.Get(size)
		if len(*got) != 0 || cap(*got) < size {
			t.Fatalf("Get(%d) = len %d cap %d", size, len(*got), cap(*got))
		}
		p.Put(got)
	}
	big := p.Get(4 << 10)
	p.Put(big) // over Max: dropped
	if got := p.Get(1); cap(*got) > p.Max {
		t.Fatalf("a buffer of %d bytes, over Max %d, was kept", cap(*got), p.Max)
	}
}

func TestRoundUp(t *testing.T) {
	for _, tc := range []struct{ size, limit, want int }{
		{0, 1 << 10, 1},
		{1, 1 << 10, 1},
		{100, 1 << 10, 128},
		{128, 1 << 10, 128},
		{129, 1 << 10, 256},
		{1000, 1 << 10, 1 << 10},
		{1025, 1 << 10, 1025}, // over the limit: exactly what was asked
		{600, 1000, 1000},     // 1024 would pass a limit that is no power of two
	} {
		if got := roundUp(tc.size, tc.limit); got != tc.want {
			t.Errorf("roundUp(%d, %d) = %d, want %d", tc.size, tc.limit, got, tc.want)
		}
	}
}

// TestGrowingSizesReuse: after a run of slightly growing sizes, as a
// writer's batches are, the buffer in use has the capacity rounded up
// once, so the run reused it; a buffer made to measure would have been
// too small for each next size and been made again.
func TestGrowingSizesReuse(t *testing.T) {
	p := &Pool{Max: 1 << 20}
	first := p.Get(1000)
	p.Put(first)
	for size := 1001; size <= 1020; size++ {
		b := p.Get(size)
		if b != first {
			// sync.Pool may drop what it holds at a GC; only a new
			// buffer's capacity is ours to check then.
			if cap(*b) < size {
				t.Fatalf("Get(%d): cap %d", size, cap(*b))
			}
			first = b
		}
		p.Put(b)
	}
	if cap(*first) != 1024 {
		t.Fatalf("buffer cap %d, want 1024 (rounded up once)", cap(*first))
	}
}
