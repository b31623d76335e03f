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
