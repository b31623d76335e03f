package raftwal

import (
	"testing"

	"go.uber.org/goleak"
)

// runCrashChild is replaced by the slow crash test's child (the test
// binary re-executed as the process that is killed); it reports whether
// this process is that child, which then exits by itself.
var runCrashChild = func() bool { return false }

// TestMain fails the package if a test leaves a goroutine behind: OpenWAL
// starts a compaction goroutine (and the logstore its committer) that
// Close must stop.
func TestMain(m *testing.M) {
	if runCrashChild() {
		return
	}
	goleak.VerifyTestMain(m)
}
