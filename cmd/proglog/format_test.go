package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func connectError(t *testing.T, code connect.Code) error {
	t.Helper()
	return connect.NewError(code, nil)
}

func TestPrinter(t *testing.T) {
	recs := []*logv1.Record{
		{Offset: 0, Value: []byte("hello")},
		{Offset: 7, Value: []byte{0xff, 0x00, 'a'}},
		{Offset: 8},
	}
	tests := []struct {
		format string
		want   string
	}{
		{"text", "hello\n\xff\x00a\n\n"},
		{"hex", "0\t68656c6c6f\n7\tff0061\n8\t\n"},
		{"json", `{"offset":0,"value":"aGVsbG8=","text":"hello"}` + "\n" +
			`{"offset":7,"value":"/wBh"}` + "\n" +
			`{"offset":8,"value":"","text":""}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var out bytes.Buffer
			p, err := newPrinter(tt.format, &out)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if err := p.print(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %q, want %q", out.String(), tt.want)
			}
		})
	}
	if _, err := newPrinter("yaml", &bytes.Buffer{}); exitCode(err) != exitUsage {
		t.Fatalf("newPrinter(yaml) err = %v, want a usage error", err)
	}
}

func TestFormatStatsAndWhoAmI(t *testing.T) {
	got := formatStats(&logv1.GetStatsResponse{LowestOffset: 10, NextOffset: 25, SizeBytes: 3 << 20, Segments: 2, NodeId: "n1", Version: "v1"})
	for _, want := range []string{"node:     n1\n", "lowest:   10\n", "next:     25\n", "records:  15\n", "size:     3.0 MiB (3145728 bytes)\n", "segments: 2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("formatStats missing %q in:\n%s", want, got)
		}
	}
	if got := formatWhoAmI(&logv1.WhoAmIResponse{Subject: "anonymous"}); !strings.Contains(got, "actions:       (none)") {
		t.Errorf("formatWhoAmI = %q", got)
	}
	if got := formatWhoAmI(&logv1.WhoAmIResponse{Subject: "root", Authenticated: true, Actions: []string{"produce", "consume"}}); !strings.Contains(got, "produce, consume") || !strings.Contains(got, "true") {
		t.Errorf("formatWhoAmI = %q", got)
	}
}

func TestHumanBytesAndDurations(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{
		13 * time.Microsecond: "13µs", 1500 * time.Microsecond: "1.50ms", 2 * time.Second: "2s",
	} {
		if got := fmtDur(in); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(lat, 50, 90, 99, 100)
	want := []time.Duration{50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("percentiles = %v, want %v", got, want)
		}
	}
	if got := percentiles([]time.Duration{7}, 50, 99); got[0] != 7 || got[1] != 7 {
		t.Fatalf("one sample: %v", got)
	}
}

func TestBatcher(t *testing.T) {
	tests := []struct {
		name       string
		values     []string
		maxRecords int
		maxBytes   int
		want       [][]string
	}{
		{"by count", []string{"a", "b", "c", "d", "e"}, 2, 1 << 20, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"by bytes", []string{"aaaa", "bbbb", "cccc", "d"}, 100, 8, [][]string{{"aaaa", "bbbb"}, {"cccc", "d"}}},
		{"oversize record alone", []string{"a", "bbbbbbbbbbbb", "c"}, 100, 8, [][]string{{"a"}, {"bbbbbbbbbbbb"}, {"c"}}},
		{"empty values count", []string{"", "", ""}, 2, 8, [][]string{{"", ""}, {""}}},
		{"nothing", nil, 10, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := make(chan []byte, len(tt.values))
			for _, v := range tt.values {
				ch <- []byte(v)
			}
			close(ch)
			b := &batcher{lines: ch, maxRecords: tt.maxRecords, maxBytes: tt.maxBytes}
			var got [][]string
			for {
				batch, ok := b.next(t.Context())
				if !ok {
					break
				}
				var s []string
				for _, v := range batch {
					s = append(s, string(v))
				}
				got = append(got, s)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if strings.Join(got[i], "|") != strings.Join(tt.want[i], "|") || len(got[i]) != len(tt.want[i]) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
	t.Run("ctx done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		b := &batcher{lines: make(chan []byte), maxRecords: 1, maxBytes: 1}
		if _, ok := b.next(ctx); ok {
			t.Fatal("next returned a batch after cancellation")
		}
	})
}

func TestReaderSource(t *testing.T) {
	out := make(chan []byte, 10)
	errc := make(chan error, 1)
	readerSource(strings.NewReader("one\r\ntwo\n\nthree"))(t.Context(), out, errc)
	var got []string
	for v := range out {
		got = append(got, string(v))
	}
	if strings.Join(got, ",") != "one,two,,three" {
		t.Fatalf("lines = %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
