package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		sync bool
	}{{"first", true}, {"second, longer than the first", false}, {"", true}} {
		if err := Write(path, []byte(tc.data), 0o600, tc.sync); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("after Write(%q): %q, %v", tc.data, got, err)
		}
		if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
			t.Fatalf("the temporary file is left: %v", err)
		}
	}
	// A failed rename (the target is a non-empty directory) keeps neither
	// the temporary file nor anything else.
	sub := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, []byte("x"), 0o600, true); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if _, err := os.Stat(sub + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is left after a failure: %v", err)
	}
}
