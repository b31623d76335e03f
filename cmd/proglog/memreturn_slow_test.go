//go:build slow

package main_test

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// serve starts itself again with the Go runtime returning memory lazily
// (GODEBUG madvdontneed=0, see internal/memlimit) unless the environment
// already chose, keeping its PID, its other GODEBUG settings and the rest
// of its environment.
func TestServeReturnsMemoryLazily(t *testing.T) {
	bin := sharedBinary(t)
	for _, tt := range []struct {
		godebug string // "": unset
		want    string
	}{
		{"", "GODEBUG=madvdontneed=0"},
		{"gctrace=0", "GODEBUG=gctrace=0,madvdontneed=0"},
		{"madvdontneed=1", "GODEBUG=madvdontneed=1"},
	} {
		t.Run(fmt.Sprintf("GODEBUG=%q", tt.godebug), func(t *testing.T) {
			if tt.godebug != "" {
				t.Setenv("GODEBUG", tt.godebug)
			} else if v, ok := os.LookupEnv("GODEBUG"); ok {
				t.Setenv("GODEBUG", v) // restored after
				os.Unsetenv("GODEBUG")
			}
			t.Setenv("PROGLOG_TEST_MARK", "kept")
			n := startNode(t, bin, t.TempDir(), freeAddr(t))
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", n.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			vars := bytes.Split(env, []byte{0})
			var godebug []string
			mark := false
			for _, v := range vars {
				if bytes.HasPrefix(v, []byte("GODEBUG=")) {
					godebug = append(godebug, string(v))
				}
				mark = mark || string(v) == "PROGLOG_TEST_MARK=kept"
			}
			if len(godebug) != 1 || godebug[0] != tt.want || !mark {
				t.Fatalf("serve's environment has %q and the test's mark %v; want [%q] and the mark", godebug, mark, tt.want)
			}
		})
	}
}
