package web

import (
	"strings"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		in   []string
		want bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"deflate, br"}, false},
		{[]string{"br", "gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.5"}, true},
		{[]string{"gzip;q=0.000"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"*;q=0, gzip"}, true},
		{[]string{"gzip;q=nonsense"}, false},
		{[]string{"gzip;q=2"}, false},
		{[]string{"identity;q=1, gzip;level=9"}, true},
		{[]string{"gzipx"}, false},
	}
	for _, tt := range tests {
		if got := acceptsGzip(tt.in); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzAcceptsGzip checks that any header parses without panicking and that
// splitting a header into several values changes nothing.
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0, *", "br;q=1.0, gzip;q=0.8, *;q=0.1", ";;,,=q", "*;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		one := acceptsGzip([]string{s})
		many := acceptsGzip(strings.Split(s, ","))
		if one != many {
			t.Fatalf("acceptsGzip(%q) = %v but split into values = %v", s, one, many)
		}
	})
}
