// Package leaktest checks that a test binary leaves no goroutine behind,
// as goleak.VerifyTestMain does, but waits longer for goroutines that end
// on their own after a Close: a node's gossip (memberlist's probes end up
// to a probe timeout after Shutdown), which on a loaded machine outlasts
// goleak's own retries.
package leaktest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// wait bounds how long VerifyTestMain waits for goroutines to end.
const wait = 5 * time.Second

// VerifyTestMain runs the tests and fails the binary if goroutines are
// left once they pass and wait has passed.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
			if err = goleak.Find(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on a successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
