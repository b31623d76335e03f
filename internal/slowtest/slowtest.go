// Package slowtest holds what the slow test tier shares.
package slowtest

import (
	"fmt"
	"os"
	"os/exec"
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

// NeedUnshare ends a test that needs an unprivileged user and mount
// namespace (unshare -rm, for a size-capped tmpfs) where there is none.
func NeedUnshare(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		Unavailable(t, "unshare not installed")
	}
	if out, err := exec.Command("unshare", "-rm", "true").CombinedOutput(); err != nil {
		Unavailable(t, "unshare -rm not permitted here: %v %s", err, out)
	}
}
