package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/proglog/proglog/logstore"
)

// runCrashChild is replaced by the slow crash test's child switch; fast
// builds never run as a child.
var runCrashChild = func() bool { return false }

func openLog(t *testing.T, dir string, cfg logstore.Config) *logstore.Log {
	t.Helper()
	l, err := logstore.Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func value(i int, size int) []byte {
	v := fmt.Appendf(nil, "record-%d-", i)
	for len(v) < size {
		v = append(v, byte('a'+i%26))
	}
	return v[:max(size, 0)]
}

func mustAppend(t *testing.T, l *logstore.Log, v []byte) uint64 {
	t.Helper()
	off, err := l.Append(t.Context(), v)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return off
}

func checkRecord(t *testing.T, l *logstore.Log, off uint64, want []byte) {
	t.Helper()
	rec, err := l.Read(context.Background(), off)
	if err != nil {
		t.Fatalf("Read(%d): %v", off, err)
	}
	if rec.Offset != off || !bytes.Equal(rec.Value, want) {
		t.Fatalf("Read(%d) = offset %d value %q, want %q", off, rec.Offset, rec.Value, want)
	}
}

func wantRange(t *testing.T, err error, lowest, next uint64) {
	t.Helper()
	var re *logstore.RangeError
	if !errors.As(err, &re) || !errors.Is(err, logstore.ErrOutOfRange) {
		t.Fatalf("err = %v, want RangeError", err)
	}
	if re.Lowest != lowest || re.Next != next {
		t.Fatalf("RangeError = %+v, want lowest %d next %d", re, lowest, next)
	}
}

// formats are the store formats the tests that depend on the bytes on disk
// run against: the one new segments get and version 1, which segments
// written by earlier versions keep.
var formats = []struct {
	name string
	cfg  func(logstore.Config) logstore.Config
}{
	{"v2", func(c logstore.Config) logstore.Config { return c }},
	{"v1", logstore.WithFormatV1},
}

// forFormats runs test once per format.
func forFormats(t *testing.T, test func(t *testing.T, format func(logstore.Config) logstore.Config)) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) { test(t, f.cfg) })
	}
}

// size8 is a value length that puts 8 records in a 1 KiB segment in either
// format: 136-byte frames in v1, 128-byte frames in v2.
const size8 = 108
