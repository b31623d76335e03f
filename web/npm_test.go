package web_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestUnitTestsNode runs the dashboard's TypeScript type check and unit
// tests (npm test) so `go test ./...` covers them.
func TestUnitTestsNode(t *testing.T) {
	if _, err := os.Stat("node_modules/.bin/esbuild"); err != nil {
		t.Fatalf("web/node_modules is missing or incomplete (%v): run make setup", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found (%v): install Node.js 20+ and run make setup", err)
	}
	cmd := exec.CommandContext(t.Context(), npm, "test", "--silent", "--", "--test-reporter=dot")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test: %v\n%s", err, out)
	}
	t.Logf("npm test:\n%s", out)
}
