package cluster_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func activeStore(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stores []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".store") {
			stores = append(stores, e.Name())
		}
	}
	if len(stores) == 0 {
		t.Fatal("no store files")
	}
	slices.Sort(stores)
	return filepath.Join(dir, stores[len(stores)-1])
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(st.Size()-n, 32)); err != nil {
		t.Fatal(err)
	}
}
