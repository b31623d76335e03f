package acl_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = syncbuf.Buffer

// writePolicy replaces the file the safe way (write + rename), as an
// operator's editor or config management would.
func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNewFileRejectsBadOrMissing(t *testing.T) {
	dir := t.TempDir()
	if _, err := acl.NewFile(filepath.Join(dir, "missing.csv"), nil); err == nil {
		t.Fatal("NewFile(missing) succeeded")
	}
	bad := filepath.Join(dir, "bad.csv")
	writePolicy(t, bad, "p, root, *, *\np, oops\n")
	_, err := acl.NewFile(bad, nil)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("NewFile(bad) err = %v, want one naming line 2", err)
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.csv")
	writePolicy(t, path, "p, root, *, *\n")
	f, err := acl.NewFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		write       string // "" = leave the file alone
		remove      bool
		wantChanged bool
		wantErr     bool
		aliceCan    bool // Allowed("alice", "consume") afterwards
		rootCan     bool // Allowed("root", "produce") afterwards
	}{
		{name: "unchanged", rootCan: true},
		{name: "grant alice", write: "p, root, *, *\np, alice, log, consume\n", wantChanged: true, aliceCan: true, rootCan: true},
		{name: "broken edit keeps old", write: "p, root, *, *\np, alice, log\n", wantErr: true, aliceCan: true, rootCan: true},
		{name: "same broken version not reported twice", aliceCan: true, rootCan: true},
		{name: "deleted keeps old", remove: true, wantErr: true, aliceCan: true, rootCan: true},
		{name: "fixed edit", write: "p, alice, log, consume\n", wantChanged: true, aliceCan: true},
		{name: "unchanged after fix", aliceCan: true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.write != "" {
				writePolicy(t, path, s.write)
			}
			if s.remove {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := f.Reload()
			if (err != nil) != s.wantErr || changed != s.wantChanged {
				t.Fatalf("Reload() = %v, %v; want changed=%v err=%v", changed, err, s.wantChanged, s.wantErr)
			}
			if got := f.Allowed("alice", "", "consume"); got != s.aliceCan {
				t.Errorf("alice consume = %v, want %v", got, s.aliceCan)
			}
			if got := f.Allowed("root", "", "produce"); got != s.rootCan {
				t.Errorf("root produce = %v, want %v", got, s.rootCan)
			}
		})
	}
	// An empty file is a valid policy that denies everything.
	writePolicy(t, path, "# nobody\n")
	if changed, err := f.Reload(); !changed || err != nil {
		t.Fatalf("Reload(empty policy) = %v, %v", changed, err)
	}
	if f.Allowed("alice", "", "consume") || len(f.Actions("alice")) != 0 {
		t.Fatal("empty policy still allows alice")
	}
}

// waitFor polls cond until it holds or the test's own deadline budget runs
// out; it fails only on timeout, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRunPollsAndStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.csv")
	writePolicy(t, path, "p, root, *, *\n")
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	f, err := acl.NewFile(path, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, time.Millisecond)
	}()
	defer func() {
		cancel()
		<-done
	}()

	writePolicy(t, path, "p, root, *, *\np, bob, *, produce\n")
	waitFor(t, "bob's grant", func() bool { return f.Allowed("bob", "", "produce") })
	waitFor(t, "the reload log line", func() bool { return strings.Contains(logs.String(), "acl reloaded") })

	writePolicy(t, path, "p, root, *, *\nthis is not a rule\n")
	waitFor(t, "the error log line", func() bool { return strings.Contains(logs.String(), "line 2") })
	if !f.Allowed("bob", "", "produce") || !f.AllowedCluster("root", "admin") {
		t.Fatal("a broken edit replaced the policy")
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("the broken version was logged %d times, want once", n)
	}

	cancel()
	<-done // Run returns once ctx is done; goleak checks nothing else lingers
}

func TestLegacyObjectHintedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.csv")
	writePolicy(t, path, "p, root, *, *\n")
	var logs syncBuffer
	f, err := acl.NewFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{
		"p, alice, log, consume\n",
		"p, alice, log, consume\np, bob, log, produce\n",
		"p, alice, orders.*, consume\n",
		"p, carol, log, admin\n",
	} {
		writePolicy(t, path, text)
		if changed, err := f.Reload(); !changed || err != nil {
			t.Fatalf("Reload %d = %v, %v", i, changed, err)
		}
	}
	if !f.Allowed("carol", "default", "admin") || f.Allowed("carol", "log", "admin") {
		t.Fatal(`"log" is not the default topic`)
	}
	if n := strings.Count(logs.String(), `the object \"log\" means the topic \"default\"`); n != 1 {
		t.Fatalf("the hint was logged %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("a warning was logged:\n%s", logs.String())
	}
}

func TestFileTopicMethods(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.csv")
	writePolicy(t, path, "p, alice, orders.*, produce\np, ops, *, admin\n")
	f, err := acl.NewFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Allowed("alice", "orders.eu", "produce") || f.Allowed("alice", "", "produce") {
		t.Error("Allowed")
	}
	if !f.AllowedAny("alice", "produce") || f.AllowedAny("alice", "consume") {
		t.Error("AllowedAny")
	}
	if !f.AllowedCluster("ops", "admin") || f.AllowedCluster("alice", "produce") {
		t.Error("AllowedCluster")
	}
	if got := f.ActionsOn("alice", "orders.eu"); len(got) != 1 || got[0] != "produce" {
		t.Errorf("ActionsOn = %v", got)
	}
	if got := f.Actions("ops"); len(got) != 1 || got[0] != "admin" {
		t.Errorf("Actions = %v", got)
	}
	// A reload to topic rules takes effect like any other.
	writePolicy(t, path, "p, alice, orders.eu, consume\n")
	if changed, err := f.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if f.Allowed("alice", "orders.eu", "produce") || !f.Allowed("alice", "orders.eu", "consume") || f.Allowed("alice", "orders.us", "consume") {
		t.Error("the reloaded policy is not in force")
	}
}
