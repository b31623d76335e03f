package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func connectError(t *testing.T, code connect.Code) error {
	t.Helper()
	return connect.NewError(code, nil)
}

func TestPrinter(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 1500, time.FixedZone("CET", 3600))
	recs := []*logv1.Record{
		{Offset: 0, Value: []byte("hello")},
		{Offset: 7, Value: []byte{0xff, 0x00, 'a'}},
		{Offset: 8},
		{Offset: 9, Value: []byte("v"), Key: []byte("k1"), Time: timestamppb.New(at),
			Headers: []*logv1.Header{{Key: "trace", Value: []byte("x=1")}, {Key: "bin", Value: []byte{0xfe}}, {Key: "trace", Value: nil}}},
		{Offset: 10, Value: []byte("w"), Key: []byte{0xc3}},
	}
	tests := []struct {
		format string
		meta   bool
		want   string
	}{
		{"text", false, "hello\n\xff\x00a\n\nv\nw\n"},
		{"text", true, "\t\t\thello\n" + "\t\t\t\xff\x00a\n" + "\t\t\t\n" +
			"2026-11-30T09:00:00.000001500Z\tk1\ttrace=x=1,bin=\xfe,trace=\tv\n" + "\t\xc3\t\tw\n"},
		{"hex", false, "0\t68656c6c6f\n7\tff0061\n8\t\n9\t76\n10\t77\n"},
		{"hex", true, "0\t\t\t\t68656c6c6f\n7\t\t\t\tff0061\n8\t\t\t\t\n" +
			"9\t2026-11-30T09:00:00.000001500Z\t6b31\t7472616365=783d31,62696e=fe,7472616365=\t76\n" + "10\t\tc3\t\t77\n"},
		{"json", false, `{"offset":0,"value":"aGVsbG8=","text":"hello"}` + "\n" +
			`{"offset":7,"value":"/wBh"}` + "\n" +
			`{"offset":8,"value":"","text":""}` + "\n" +
			`{"offset":9,"value":"dg==","text":"v","key":"azE=","key_text":"k1","headers":[` +
			`{"key":"trace","value":"eD0x","text":"x=1"},{"key":"bin","value":"/g=="},{"key":"trace","value":"","text":""}],` +
			`"time":"2026-11-30T09:00:00.000001500Z"}` + "\n" +
			`{"offset":10,"value":"dw==","text":"w","key":"ww=="}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/meta=%t", tt.format, tt.meta), func(t *testing.T) {
			var out bytes.Buffer
			p, err := newPrinter(tt.format, tt.meta, &out)
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
				t.Fatalf("got  %q\nwant %q", out.String(), tt.want)
			}
		})
	}
	if _, err := newPrinter("yaml", false, &bytes.Buffer{}); exitCode(err) != exitUsage {
		t.Fatalf("newPrinter(yaml) err = %v, want a usage error", err)
	}
}

// The json format's times parse back as RFC 3339 to the nanosecond.
func TestPrinterJSONTimeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 123456789, time.UTC)
	var out bytes.Buffer
	p, _ := newPrinter("json", false, &out)
	if err := p.print(&logv1.Record{Time: timestamppb.New(at)}); err != nil {
		t.Fatal(err)
	}
	p.flush()
	var got struct{ Time time.Time }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || !got.Time.Equal(at) {
		t.Fatalf("%s: time %v, %v; want %v", out.String(), got.Time, err, at)
	}
}

func TestConsumeFlags(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		flags   consumeFlags
		changed []string
		want    consumeRange // checked when wantErr is ""
		wantErr string
	}{
		{"defaults", consumeFlags{}, nil, consumeRange{}, ""},
		{"from to", consumeFlags{from: 3, to: 9}, []string{"from", "to"}, consumeRange{from: 3, fromSet: true, to: 9, toSet: true}, ""},
		{"to before from", consumeFlags{from: 9, to: 3}, []string{"from", "to"}, consumeRange{}, "--to 3 is before --from 9"},
		{"to and count", consumeFlags{to: 3, count: 1}, []string{"to", "count"}, consumeRange{}, "exclude"},
		{"from-time", consumeFlags{fromTime: "2026-11-30T10:00:00Z"}, []string{"from-time"},
			consumeRange{at: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), byTime: true}, ""},
		{"from-time nanos and zone", consumeFlags{fromTime: "2026-11-30T11:00:00.000000001+01:00", follow: true}, []string{"from-time", "follow"},
			consumeRange{at: time.Date(2026, 11, 30, 10, 0, 0, 1, time.UTC), byTime: true, follow: true}, ""},
		{"from-time with to", consumeFlags{fromTime: "2026-11-30T10:00:00Z", to: 5}, []string{"from-time", "to"},
			consumeRange{at: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), byTime: true, to: 5, toSet: true}, ""},
		{"since", consumeFlags{since: 10 * time.Minute}, []string{"since"}, consumeRange{at: now.Add(-10 * time.Minute), byTime: true}, ""},
		{"since zero", consumeFlags{}, []string{"since"}, consumeRange{at: now, byTime: true}, ""},
		{"bad time", consumeFlags{fromTime: "yesterday"}, []string{"from-time"}, consumeRange{}, `--from-time "yesterday": want an RFC 3339 time`},
		{"time without zone", consumeFlags{fromTime: "2026-11-30T10:00:00"}, []string{"from-time"}, consumeRange{}, "want an RFC 3339 time"},
		{"negative since", consumeFlags{since: -time.Minute}, []string{"since"}, consumeRange{}, "--since -1m0s"},
		{"from-time and since", consumeFlags{fromTime: "2026-11-30T10:00:00Z", since: time.Minute}, []string{"from-time", "since"}, consumeRange{}, "--from-time and --since exclude each other"},
		{"from-time and from", consumeFlags{fromTime: "2026-11-30T10:00:00Z", from: 1}, []string{"from-time", "from"}, consumeRange{}, "--from-time excludes --from and --from-end"},
		{"since and from-end", consumeFlags{since: time.Minute, fromEnd: true}, []string{"since", "from-end"}, consumeRange{}, "--since excludes --from and --from-end"},
		{"from zero is still from", consumeFlags{since: time.Minute}, []string{"since", "from"}, consumeRange{}, "--since excludes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.flags.rangeOf(func(name string) bool { return slices.Contains(tt.changed, name) }, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != exitUsage {
					t.Fatalf("err = %v, want a usage error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.at.Equal(tt.want.at) {
				t.Fatalf("at = %v, want %v", got.at, tt.want.at)
			}
			got.at, tt.want.at = time.Time{}, time.Time{}
			if got != tt.want {
				t.Fatalf("range = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRecordFlags(t *testing.T) {
	long := strings.Repeat("é", 129) // 258 bytes
	tests := []struct {
		name    string
		flags   recordFlags
		changed []string
		line    string
		want    *logv1.Record // nil: the line is refused
		wantErr string        // a usage error from the flags
	}{
		{"plain", recordFlags{}, nil, "v", &logv1.Record{Value: []byte("v")}, ""},
		{"key and headers", recordFlags{key: "k", headers: []string{"a=1", "b=x=y", "a=", "ü=2"}}, []string{"record-key", "header"}, "v",
			&logv1.Record{Value: []byte("v"), Key: []byte("k"), Headers: []*logv1.Header{
				{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("x=y")}, {Key: "a", Value: []byte{}}, {Key: "ü", Value: []byte("2")}}}, ""},
		{"empty key given", recordFlags{key: ""}, []string{"record-key"}, "v", &logv1.Record{Value: []byte("v"), Key: []byte{}}, ""},
		{"separator", recordFlags{separator: "::"}, []string{"key-separator"}, "k::v::w", &logv1.Record{Key: []byte("k"), Value: []byte("v::w")}, ""},
		{"separator empty key and value", recordFlags{separator: ":"}, []string{"key-separator"}, ":", &logv1.Record{Key: []byte{}, Value: []byte{}}, ""},
		{"separator with headers", recordFlags{separator: "\t", headers: []string{"h=1"}}, []string{"key-separator", "header"}, "k\tv",
			&logv1.Record{Key: []byte("k"), Value: []byte("v"), Headers: []*logv1.Header{{Key: "h", Value: []byte("1")}}}, ""},
		{"no separator in the line", recordFlags{separator: ":"}, []string{"key-separator"}, "kv", nil, ""},
		{"empty separator", recordFlags{separator: ""}, []string{"key-separator"}, "", nil, "--key-separator must not be empty"},
		{"key and separator", recordFlags{key: "k", separator: ":"}, []string{"record-key", "key-separator"}, "", nil, "--record-key and --key-separator exclude each other"},
		{"header without =", recordFlags{headers: []string{"a"}}, []string{"header"}, "", nil, `--header "a": want key=value`},
		{"empty header key", recordFlags{headers: []string{"=v"}}, []string{"header"}, "", nil, "empty key"},
		{"header key too long", recordFlags{headers: []string{long + "=v"}}, []string{"header"}, "", nil, "258 bytes, more than 256"},
		{"header key at the limit", recordFlags{headers: []string{strings.Repeat("k", 256) + "=v"}}, []string{"header"}, "v",
			&logv1.Record{Value: []byte("v"), Headers: []*logv1.Header{{Key: strings.Repeat("k", 256), Value: []byte("v")}}}, ""},
		{"header key not UTF-8", recordFlags{headers: []string{"\xff=v"}}, []string{"header"}, "", nil, "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := tt.flags.template(func(name string) bool { return slices.Contains(tt.changed, name) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != exitUsage {
					t.Fatalf("err = %v, want a usage error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.record([]byte(tt.line), func() string { return "standard input line 7" })
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "standard input line 7 has no key separator") {
					t.Fatalf("record(%q) = %v, %v; want it refused, naming the line", tt.line, got, err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("record(%q) = %v, %v; want %v", tt.line, got, err, tt.want)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	denied := connect.NewWireError(connect.CodePermissionDenied, errors.New(`subject "bob" may not "produce"`))
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("boom"), "boom"},
		{"connect alone", denied, `permission_denied: subject "bob" may not "produce"`},
		{"wrapped", fmt.Errorf("client: Produce on a:1: %w", denied), `permission_denied: subject "bob" may not "produce" (client: Produce on a:1)`},
		{"joined", fmt.Errorf("client: discovering: %w", errors.Join(errors.New("retries exhausted"), fmt.Errorf("a:1: %w", denied))),
			`permission_denied: subject "bob" may not "produce" (client: discovering: retries exhausted; a:1)`},
		{"not at the end", fmt.Errorf("%w (last failure: %w)", context.Canceled, denied),
			`context canceled (last failure: permission_denied: subject "bob" may not "produce")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := message(tt.err); got != tt.want {
				t.Fatalf("message = %q, want %q", got, tt.want)
			}
		})
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
			ch := make(chan *logv1.Record, len(tt.values))
			for _, v := range tt.values {
				ch <- &logv1.Record{Value: []byte(v)}
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
				for _, r := range batch {
					s = append(s, string(r.GetValue()))
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
	t.Run("keys and headers weigh", func(t *testing.T) {
		ch := make(chan *logv1.Record, 2)
		ch <- &logv1.Record{Value: []byte("v"), Key: []byte("kkkk")}
		ch <- &logv1.Record{Value: []byte("v"), Headers: []*logv1.Header{{Key: "hh", Value: []byte("xx")}}}
		close(ch)
		b := &batcher{lines: ch, maxRecords: 10, maxBytes: 8}
		if batch, _ := b.next(t.Context()); len(batch) != 1 {
			t.Fatalf("first batch has %d records; 5 + 5 bytes exceed 8", len(batch))
		}
	})
	t.Run("ctx done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		b := &batcher{lines: make(chan *logv1.Record), maxRecords: 1, maxBytes: 1}
		if _, ok := b.next(ctx); ok {
			t.Fatal("next returned a batch after cancellation")
		}
	})
}

func TestSources(t *testing.T) {
	sep := recordTemplate{separator: []byte(":")}
	tests := []struct {
		name    string
		src     lineSource
		want    []string // key/value
		wantErr string
	}{
		{"lines", readerSource(strings.NewReader("one\r\ntwo\n\nthree"), recordTemplate{}), []string{"/one", "/two", "/", "/three"}, ""},
		{"keyed lines", readerSource(strings.NewReader("a:1\nb:2:3\n"), sep), []string{"a/1", "b/2:3"}, ""},
		{"a line without separator", readerSource(strings.NewReader("a:1\nb:2\nnope\nc:3\n"), sep), []string{"a/1", "b/2"},
			`standard input line 3 has no key separator ":"`},
		{"an empty line without separator", readerSource(strings.NewReader("a:1\n\n"), sep), []string{"a/1"}, "standard input line 2 has"},
		{"arguments", argSource([]string{"x", "y"}, recordTemplate{key: []byte("k")}), []string{"k/x", "k/y"}, ""},
		{"keyed arguments", argSource([]string{"x:1", "y"}, sep), []string{"x/1"}, `argument 2 has no key separator ":"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make(chan *logv1.Record, 10)
			errc := make(chan error, 1)
			tt.src(t.Context(), out, errc)
			var got []string
			for r := range out {
				got = append(got, string(r.GetKey())+"/"+string(r.GetValue()))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("records = %q, want %q", got, tt.want)
			}
			err := <-errc
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
