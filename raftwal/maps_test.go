package raftwal

import (
	"os"
	"strings"
	"testing"
)

// mappingsUnder lists the process's memory mappings of files under dir.
func mappingsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	var found []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, dir+"/") {
			found = append(found, line)
		}
	}
	return found
}
