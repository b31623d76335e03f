package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives raft an hclog.Logger that writes through logger: hclog
// emits JSON lines, which hclogWriter turns back into slog records.
func newHCLogger(logger *slog.Logger, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Info,
		JSONFormat: true,
		Output:     &hclogWriter{logger: logger},
	})
}

// hclogWriter parses hclog's JSON lines.
type hclogWriter struct {
	mu     sync.Mutex // guards buf
	buf    []byte
	logger *slog.Logger
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

func (w *hclogWriter) emit(line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.logger.Info(string(line))
		return
	}
	level := slog.LevelInfo
	switch m["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := m["@message"].(string)
	if level == slog.LevelWarn && msg == "heartbeat timeout reached, starting election" && m["last-leader-id"] == "" {
		// No leader was ever heard of: a node starting (a one-member
		// cluster on every start), not a leader lost.
		level = slog.LevelInfo
	}
	module, _ := m["@module"].(string)
	attrs := []slog.Attr{slog.String("component", module)}
	for k, v := range m {
		if len(k) > 0 && k[0] == '@' {
			continue
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	w.logger.LogAttrs(context.Background(), level, msg, attrs...)
}
