package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// probeCmd is a root command with the real precedence logic and one
// subcommand that reports the values it ended up with.
func probeCmd(t *testing.T, getenv func(string) string) (*cobra.Command, *map[string]string) {
	t.Helper()
	got := map[string]string{}
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: getenv}
	root := newRootCmd(e)
	var addr, sync string
	var size byteSize = 1 << 20
	var every time.Duration
	var insecure bool
	probe := &cobra.Command{
		Use: "probe",
		RunE: func(*cobra.Command, []string) error {
			got["addr"], got["sync"], got["size"] = addr, sync, size.String()
			got["every"], got["insecure"] = every.String(), fmt.Sprint(insecure)
			return nil
		},
	}
	probe.Flags().StringVar(&addr, "addr", "127.0.0.1:8400", "")
	probe.Flags().StringVar(&sync, "sync", "always", "")
	probe.Flags().Var(&size, "max-record-bytes", "")
	probe.Flags().DurationVar(&every, "sync-interval", 100*time.Millisecond, "")
	probe.Flags().BoolVar(&insecure, "insecure", false, "")
	root.AddCommand(probe)
	return root, &got
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "proglog.conf")
	if err := os.WriteFile(conf, []byte(`
# comment
addr = 10.0.0.1:1
sync = "never"
max-record-bytes = 2MiB
sync-interval = 1s
insecure = true
data-dir = /ignored/by/probe   # a flag of another command is allowed
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want map[string]string
	}{
		{
			name: "defaults",
			args: []string{"probe"},
			want: map[string]string{"addr": "127.0.0.1:8400", "sync": "always", "size": "1MiB", "every": "100ms", "insecure": "false"},
		},
		{
			name: "file over default",
			args: []string{"probe", "--config", conf},
			want: map[string]string{"addr": "10.0.0.1:1", "sync": "never", "size": "2MiB", "every": "1s", "insecure": "true"},
		},
		{
			name: "env over file",
			args: []string{"probe", "--config", conf},
			env:  map[string]string{"PROGLOG_ADDR": "10.0.0.2:2", "PROGLOG_MAX_RECORD_BYTES": "4096", "PROGLOG_INSECURE": "false"},
			want: map[string]string{"addr": "10.0.0.2:2", "sync": "never", "size": "4KiB", "every": "1s", "insecure": "false"},
		},
		{
			name: "flag over env",
			args: []string{"probe", "--config", conf, "--addr", "10.0.0.3:3", "--sync-interval", "5ms"},
			env:  map[string]string{"PROGLOG_ADDR": "10.0.0.2:2", "PROGLOG_SYNC_INTERVAL": "2s"},
			want: map[string]string{"addr": "10.0.0.3:3", "sync": "never", "size": "2MiB", "every": "5ms", "insecure": "true"},
		},
		{
			name: "config file from the environment",
			args: []string{"probe"},
			env:  map[string]string{"PROGLOG_CONFIG": conf},
			want: map[string]string{"addr": "10.0.0.1:1", "sync": "never", "size": "2MiB", "every": "1s", "insecure": "true"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, got := probeCmd(t, func(k string) string { return tt.env[k] })
			root.SetArgs(tt.args)
			if err := root.ExecuteContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if (*got)[k] != want {
					t.Errorf("%s = %q, want %q", k, (*got)[k], want)
				}
			}
		})
	}
}

func TestPrecedenceErrorsAreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"probe", "--config", write("a.conf", "adr = x\n")}, nil, `a.conf:1: unknown setting "adr"`},
		{"bad line", []string{"probe", "--config", write("b.conf", "\n\naddr\n")}, nil, `b.conf:3: want "name = value"`},
		{"duplicate", []string{"probe", "--config", write("c.conf", "addr = a\naddr = b\n")}, nil, "already set on line 1"},
		{"bad value in file", []string{"probe", "--config", write("d.conf", "max-record-bytes = lots\n")}, nil, "d.conf:1: max-record-bytes"},
		{"bad value in env", []string{"probe"}, map[string]string{"PROGLOG_SYNC_INTERVAL": "soon"}, "PROGLOG_SYNC_INTERVAL"},
		{"missing file", []string{"probe", "--config", filepath.Join(dir, "nope.conf")}, nil, "nope.conf"},
		{"unknown flag", []string{"probe", "--nope"}, nil, "unknown flag"},
		{"unknown command", []string{"nope"}, nil, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, _ := probeCmd(t, func(k string) string { return tt.env[k] })
			root.SetArgs(tt.args)
			err := root.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if code := exitCode(err); code != exitUsage {
				t.Fatalf("exit code %d, want %d", code, exitUsage)
			}
		})
	}
}

func TestParseConfigQuoting(t *testing.T) {
	m, err := parseConfig(strings.NewReader("--acl = \"/etc/proglog/acl #1.csv\"\nnode-id=n1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m["acl"].value != "/etc/proglog/acl #1.csv" || m["node-id"].value != "n1" || m["node-id"].line != 2 {
		t.Fatalf("parseConfig = %+v", m)
	}
	if _, err := parseConfig(strings.NewReader(`acl = "unterminated`)); err == nil {
		t.Fatal("bad quoting accepted")
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
		str     string
	}{
		{"0", 0, false, "0"},
		{"100", 100, false, "100"},
		{"100B", 100, false, "100"},
		{"1KiB", 1024, false, "1KiB"},
		{"64MiB", 64 << 20, false, "64MiB"},
		{"64mib", 64 << 20, false, "64MiB"},
		{"10GiB", 10 << 30, false, "10GiB"},
		{"1MB", 1_000_000, false, "1000000"},
		{"2M", 2 << 20, false, "2MiB"},
		{" 3 KiB ", 3 << 10, false, "3KiB"},
		{"1500", 1500, false, "1500"},
		{"-1", 0, true, ""},
		{"MiB", 0, true, ""},
		{"1.5MiB", 0, true, ""},
		{"9999999999TiB", 0, true, ""},
		{"", 0, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b byteSize
			err := b.Set(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Set(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (int64(b) != tt.want || b.String() != tt.str) {
				t.Fatalf("Set(%q) = %d (%s), want %d (%s)", tt.in, b, b.String(), tt.want, tt.str)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"plain", errors.New("boom"), exitError},
		{"usage", usagef("bad flag"), exitUsage},
		{"wrapped usage", fmt.Errorf("x: %w", usagef("bad")), exitUsage},
		{"unauthenticated", connectError(t, 16), exitDenied},
		{"permission denied", connectError(t, 7), exitDenied},
		{"unavailable", connectError(t, 14), exitError},
		{"canceled", context.Canceled, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestRunPrintsOneLine(t *testing.T) {
	var stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	code := run(t.Context(), []string{"consume", "--format", "xml", "--data-dir", t.TempDir()}, e)
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
	if got := stderr.String(); got != "proglog: --format \"xml\": want text, json or hex\n" {
		t.Fatalf("stderr = %q", got)
	}
	if got := oneLine("a\nb\n  c "); got != "a b c" {
		t.Fatalf("oneLine = %q", got)
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	if code := run(t.Context(), []string{"version"}, e); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	if !strings.HasPrefix(stdout.String(), "proglog dev") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("version output %q", stdout.String())
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"addr = 127.0.0.1:8400\n# c\n\nsync=always",
		`acl = "a b#c"`,
		"=x", "a =", "a b = c", "--x = \"\\u00e9\"", "a = 1\na = 2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m, err := parseConfig(strings.NewReader(text))
		if err != nil {
			return
		}
		lines := strings.Count(text, "\n") + 1
		for name, v := range m {
			if name == "" || strings.ContainsAny(name, " \t=") || strings.HasPrefix(name, "-") {
				t.Fatalf("bad name %q accepted", name)
			}
			if v.line < 1 || v.line > lines {
				t.Fatalf("%s: line %d outside 1..%d", name, v.line, lines)
			}
		}
	})
}

func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"0", "1", "64MiB", "1MB", "10gib", "9223372036854775807", "8EiB", "-1", " 2 K "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseByteSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseByteSize(%q) = %d", s, n)
		}
		back, err := parseByteSize(formatByteSize(n))
		if err != nil || back != n {
			t.Fatalf("round trip of %d via %q = %d, %v", n, formatByteSize(n), back, err)
		}
	})
}
