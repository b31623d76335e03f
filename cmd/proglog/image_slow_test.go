//go:build slow

package main_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/proglog/proglog/internal/slowtest"
)

// TestImage builds the container image with make image and checks what it
// holds without running it (containers cannot run everywhere podman
// builds): the image's configuration, and, from an exported file system,
// that the binary is static and that it carries its version and
// the dashboard. The exported proglog is run on the host for its version.
func TestImage(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		slowtest.Unavailable(t, "podman not installed (apt-get install podman; make setup does)")
	}
	root := repoRoot(t)
	const version = "v0.0.0-imagetest"
	image := fmt.Sprintf("localhost/proglog-imagetest:%d", os.Getpid())
	make := exec.Command("make", "image", "IMAGE="+image, "VERSION="+version, "CONTAINER_TOOL="+podman)
	make.Dir = root
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "rmi", "--force", image).CombinedOutput(); err != nil {
			t.Logf("podman rmi %s: %v\n%s", image, err, out)
		}
	})

	t.Run("config", func(t *testing.T) {
		out, err := exec.Command(podman, "image", "inspect", image).Output()
		if err != nil {
			t.Fatalf("podman image inspect: %v", err)
		}
		var inspect []struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]struct{}
				Volumes      map[string]struct{}
				Env          []string
				Labels       map[string]string
			}
			Size int64
		}
		if err := json.Unmarshal(out, &inspect); err != nil || len(inspect) != 1 {
			t.Fatalf("podman image inspect: %v (%d images)\n%s", err, len(inspect), out)
		}
		c := inspect[0].Config
		t.Logf("image %s: %.1f MB", image, float64(inspect[0].Size)/1e6)
		uid, gid, ok := strings.Cut(c.User, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 || !ok {
			t.Errorf("User %q: want a numeric non-root uid:gid", c.User)
		}
		if n, err := strconv.Atoi(gid); err != nil || n == 0 {
			t.Errorf("User %q: want a numeric non-root gid", c.User)
		}
		if want := []string{"/usr/local/bin/proglog"}; !slices.Equal(c.Entrypoint, want) {
			t.Errorf("Entrypoint %q, want %q", c.Entrypoint, want)
		}
		if len(c.Cmd) == 0 || c.Cmd[0] != "serve" {
			t.Errorf("Cmd %q: want serve and its flags", c.Cmd)
		}
		for _, port := range []string{"8400/tcp", "8401/tcp", "8401/udp"} {
			if _, ok := c.ExposedPorts[port]; !ok {
				t.Errorf("ExposedPorts %v lack %s", c.ExposedPorts, port)
			}
		}
		if _, ok := c.Volumes["/var/lib/proglog"]; !ok || len(c.Volumes) != 1 {
			t.Errorf("Volumes %v, want /var/lib/proglog", c.Volumes)
		}
		if !slices.Contains(c.Env, "PROGLOG_DATA_DIR=/var/lib/proglog") {
			t.Errorf("Env %q lacks PROGLOG_DATA_DIR=/var/lib/proglog", c.Env)
		}
		if got := c.Labels["org.opencontainers.image.version"]; got != version {
			t.Errorf("label org.opencontainers.image.version %q, want %q", got, version)
		}
		for _, l := range []string{"org.opencontainers.image.revision", "org.opencontainers.image.source", "org.opencontainers.image.created"} {
			if c.Labels[l] == "" {
				t.Errorf("label %s missing (labels: %v)", l, c.Labels)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		files := exportImage(t, podman, image)
		want := map[string]struct {
			uid  int
			mode os.FileMode
		}{
			"usr/local/bin/proglog": {0, 0o555},
			"var/lib/proglog/":      {65532, 0o755},
			"etc/passwd":            {0, 0o644},
		}
		for name, w := range want {
			f, ok := files[name]
			if !ok {
				t.Errorf("%s missing from the image", name)
				continue
			}
			if f.hdr.Uid != w.uid || f.hdr.FileInfo().Mode().Perm() != w.mode {
				t.Errorf("%s: uid %d mode %v, want uid %d mode %v", name, f.hdr.Uid, f.hdr.FileInfo().Mode().Perm(), w.uid, w.mode)
			}
		}
		for _, name := range []string{"var/", "var/lib/", "usr/local/bin/"} {
			if f, ok := files[name]; ok && f.hdr.Uid != 0 {
				t.Errorf("%s owned by uid %d, want root: only the data dir is the nonroot user's", name, f.hdr.Uid)
			}
		}
		for _, name := range []string{"usr/local/bin/proglog"} {
			if f, ok := files[name]; ok {
				checkStatic(t, name, f.data)
			}
		}
		bin, ok := files["usr/local/bin/proglog"]
		if !ok {
			return
		}
		// The dashboard is embedded: its index.html is in the binary.
		index, err := os.ReadFile(filepath.Join(root, "web", "dist", "index.html"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(bin.data, index) {
			t.Error("proglog in the image does not embed web/dist/index.html")
		}
		if runtime.GOOS != "linux" {
			return
		}
		path := filepath.Join(t.TempDir(), "proglog")
		if err := os.WriteFile(path, bin.data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "proglog "+version+" ") {
			t.Errorf("proglog version of the image's binary: %v %q, want it to start with %q", err, out, "proglog "+version+" ")
		}
	})
}

// imageFile is one entry of an exported image file system.
type imageFile struct {
	hdr  *tar.Header
	data []byte
}

// exportImage returns the files of image, read from podman export of a
// container created (never started) from it.
func exportImage(t *testing.T, podman, image string) map[string]imageFile {
	t.Helper()
	name := fmt.Sprintf("proglog-imagetest-%d", os.Getpid())
	if out, err := exec.Command(podman, "create", "--name", name, image).CombinedOutput(); err != nil {
		t.Fatalf("podman create: %v\n%s", err, out)
	}
	defer func() {
		if out, err := exec.Command(podman, "rm", "--force", name).CombinedOutput(); err != nil {
			t.Logf("podman rm %s: %v\n%s", name, err, out)
		}
	}()
	cmd := exec.Command(podman, "export", name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]imageFile{}
	tr := tar.NewReader(stdout)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading podman export: %v", err)
		}
		f := imageFile{hdr: hdr}
		if hdr.Typeflag == tar.TypeReg {
			if f.data, err = io.ReadAll(tr); err != nil {
				t.Fatalf("reading %s from podman export: %v", hdr.Name, err)
			}
		}
		files[strings.TrimPrefix(hdr.Name, "./")] = f
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("podman export: %v\n%s", err, stderr.Bytes())
	}
	return files
}

// checkStatic fails unless data is an ELF executable for this machine's
// architecture that needs no dynamic loader and no shared library: the
// image has neither.
func checkStatic(t *testing.T, name string, data []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: not an ELF file: %v", name, err)
		return
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		t.Errorf("%s: ELF type %v, want a static executable (ET_EXEC)", name, f.Type)
	}
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && f.Machine != want {
		t.Errorf("%s: machine %v, want %v", name, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header: dynamically linked", name, p.Type)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Errorf("%s: reading DT_NEEDED: %v", name, err)
	}
	if len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %q", name, libs)
	}
}
