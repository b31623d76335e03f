package memlimit

import (
	"slices"
	"testing"
)

func TestLazyEnv(t *testing.T) {
	for _, tt := range []struct {
		name  string
		goos  string
		env   []string
		want  []string
		added bool
	}{
		{"no GODEBUG", "linux", []string{"HOME=/root", "PATH=/bin"}, []string{"HOME=/root", "PATH=/bin", "GODEBUG=madvdontneed=0"}, true},
		{"other settings kept", "linux", []string{"GODEBUG=gctrace=1", "A=b"}, []string{"A=b", "GODEBUG=gctrace=1,madvdontneed=0"}, true},
		{"empty GODEBUG", "linux", []string{"GODEBUG="}, []string{"GODEBUG=madvdontneed=0"}, true},
		{"operator chose eager", "linux", []string{"GODEBUG=madvdontneed=1"}, []string{"GODEBUG=madvdontneed=1"}, false},
		{"operator chose among others", "linux", []string{"GODEBUG=gctrace=1, madvdontneed=1"}, []string{"GODEBUG=gctrace=1, madvdontneed=1"}, false},
		{"already lazy: no second exec", "linux", []string{"GODEBUG=madvdontneed=0"}, []string{"GODEBUG=madvdontneed=0"}, false},
		{"a look-alike is not the setting", "linux", []string{"GODEBUG=xmadvdontneed=1"}, []string{"GODEBUG=xmadvdontneed=1,madvdontneed=0"}, true},
		{"not linux", "darwin", []string{"A=b"}, []string{"A=b"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, added := lazyEnv(tt.goos, tt.env)
			if added != tt.added || !slices.Equal(got, tt.want) {
				t.Fatalf("lazyEnv(%q, %q) = %q, %v; want %q, %v", tt.goos, tt.env, got, added, tt.want, tt.added)
			}
		})
	}
}
