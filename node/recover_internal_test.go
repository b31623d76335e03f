package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLoadPeers(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []peer
		wantErr    bool
	}{
		{"members", "# comment\nn1 127.0.0.1:1\n\nn2 host:2\n", []peer{{"n1", "127.0.0.1:1"}, {"n2", "host:2"}}, false},
		{"empty", "", nil, false},
		{"no address", "n1\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, peersFile), []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadPeers(dir)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("loadPeers = %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := loadPeers(t.TempDir()); !os.IsNotExist(err) {
		t.Fatalf("no file: %v, want not exist", err)
	}
}
