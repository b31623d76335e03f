package service_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/service"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Every RPC, served or refused, gets one access line at debug.
func TestAccessLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, envOptions{config: func(c *service.Config) { c.Logger = logger }})
	if _, err := e.client(idRoot).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(idReader).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("b")}); err == nil {
		t.Fatal("reader produced")
	}
	if _, err := e.client(idReader).Consume(t.Context(), &logv1.ConsumeRequest{Offset: 9}); err == nil {
		t.Fatal("consumed past the end")
	}
	var got []string
	for _, l := range buf.lines(t) {
		if l["msg"] != "rpc" {
			continue
		}
		if l["level"] != "DEBUG" || l["duration"] == nil {
			t.Fatalf("access line %v", l)
		}
		got = append(got, l["procedure"].(string)+" "+l["subject"].(string)+" "+l["code"].(string))
	}
	want := []string{
		"/log.v1.LogService/Produce root ok",
		"/log.v1.LogService/Produce reader permission_denied",
		"/log.v1.LogService/Consume reader out_of_range",
	}
	if len(got) != len(want) {
		t.Fatalf("access lines %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("access lines %q, want %q", got, want)
		}
	}
}
