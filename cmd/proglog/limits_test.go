package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/proglog/proglog/service"
)

func TestLimitFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" for valid
	}{
		{"defaults", nil, ""},
		{"set", []string{"--max-conns", "100", "--max-anonymous-conns", "10", "--body-timeout", "3s", "--max-header-bytes", "32KiB"}, ""},
		{"anonymous over total", []string{"--max-conns", "10", "--max-anonymous-conns", "20"}, "must not exceed --max-conns"},
		{"zero streams", []string{"--max-streams", "0"}, "--max-streams must be at least 1"},
		{"zero timeout", []string{"--idle-timeout", "0s"}, "--idle-timeout must be positive"},
		{"tiny headers", []string{"--max-header-bytes", "1KiB"}, "at least 4KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lf limitFlags
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			lf.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			lim, err := lf.limits()
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != exitUsage {
					t.Fatalf("err = %v, want a usage error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := lim.Validate(); err != nil {
				t.Fatalf("flags passed, Limits.Validate: %v", err)
			}
			if tt.args == nil && lim != service.DefaultLimits() {
				t.Fatalf("default flags give %+v, want %+v", lim, service.DefaultLimits())
			}
		})
	}
}
