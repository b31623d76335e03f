package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(cleanupRun{m}) }

// cleanupRun removes the binary the slow cluster tests build once per test
// binary (see sharedBinary) after every test ran.
type cleanupRun struct{ m *testing.M }

func (c cleanupRun) Run() int {
	defer os.RemoveAll(sharedBinaryDir())
	return c.m.Run()
}

// sharedBinaryDir must match the slow tests' copy in package main_test.
func sharedBinaryDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("proglog-test-bin-%d", os.Getpid()))
}
