package raftwal

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: OpenWAL
// starts a compaction goroutine (and the logstore its committer) that
// Close must stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
