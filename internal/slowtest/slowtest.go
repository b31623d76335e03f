// Package slowtest holds what the slow test tier shares.
package slowtest

import (
	"fmt"
	"os"
	"testing"
)

// Unavailable ends a test that needs something this machine lacks (root,
// network namespaces, unshare, a tmpfs mount): it skips, saying why, except
// in CI (CI=true), where it fails, so a CI run can never pass without the
// crash, disk-full and partition tests having run.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: slow-tier tests must run, not skip)", msg)
	}
	t.Skip(msg)
}
