package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// hclog's JSON lines become slog records with the level and attributes
// they carried; a start's first election is not a warning.
func TestHCLogWriter(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"info", `{"@level":"info","@message":"entering follower state","@module":"raft","leader-id":""}`, slog.LevelInfo, "entering follower state"},
		{"debug", `{"@level":"debug","@message":"x","@module":"raft"}`, slog.LevelDebug, "x"},
		{"error", `{"@level":"error","@message":"failed to appendEntries to","@module":"raft"}`, slog.LevelError, "failed to appendEntries to"},
		{"leader lost", `{"@level":"warn","@message":"heartbeat timeout reached, starting election","@module":"raft","last-leader-id":"n1"}`, slog.LevelWarn, "heartbeat timeout reached, starting election"},
		{"first election", `{"@level":"warn","@message":"heartbeat timeout reached, starting election","@module":"raft","last-leader-id":""}`, slog.LevelInfo, "heartbeat timeout reached, starting election"},
		{"not json", `plain text`, slog.LevelInfo, "plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := &hclogWriter{logger: slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			// Written in two pieces: a line is emitted once it is whole.
			half := len(tt.line) / 2
			w.Write([]byte(tt.line[:half]))
			if out.Len() != 0 {
				t.Fatalf("half a line was emitted: %s", out.String())
			}
			w.Write([]byte(tt.line[half:] + "\n"))
			var rec map[string]any
			if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
				t.Fatalf("%v: %q", err, out.String())
			}
			if rec["level"] != tt.wantLevel.String() || rec["msg"] != tt.wantMsg {
				t.Fatalf("got level %v msg %v, want %v %q", rec["level"], rec["msg"], tt.wantLevel, tt.wantMsg)
			}
		})
	}
}
