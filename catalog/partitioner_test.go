package catalog

import "testing"

// The vectors of Kafka's UtilsTest.testMurmur2.
func TestMurmur2MatchesKafka(t *testing.T) {
	tests := []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tt := range tests {
		if got := murmur2([]byte(tt.key)); got != tt.want {
			t.Errorf("murmur2(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestPartitionForKeyInRange(t *testing.T) {
	for n := 1; n <= 64; n++ {
		for _, k := range []string{"", "a", "abc", "21", "foobar", "\xff\xff\xff\xff"} {
			if p := PartitionForKey([]byte(k), n); p < 0 || p >= n {
				t.Fatalf("PartitionForKey(%q, %d) = %d", k, n, p)
			}
		}
	}
}
