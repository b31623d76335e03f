package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names of the development identity in its directory.
const (
	DevCAFile        = "ca.pem"
	DevCAKeyFile     = "ca-key.pem"
	DevServerFile    = "server.pem"
	DevServerKeyFile = "server-key.pem"
	DevClientFile    = "root.pem"
	DevClientKeyFile = "root-key.pem"
	DevClientP12File = "root.p12"
	// DevP12Password protects root.p12; browsers ask for it on import.
	DevP12Password = "proglog"
	// DevClientName is the Common Name of the development client certificate.
	DevClientName = "root"
)

// devServerHosts are the names the development server certificate covers.
var devServerHosts = []string{"localhost", "127.0.0.1", "::1"}

// EnsureDevIdentity creates, where missing, a development CA, a server
// certificate for localhost, 127.0.0.1 and ::1, and a "root" client
// certificate (PEM and PKCS#12 with password "proglog") in dir. Existing
// files are reused; if the CA itself is missing, everything it signed is
// replaced, since the old certificates would no longer verify. created
// reports whether any file was written. Keys are written with mode 0600.
func EnsureDevIdentity(dir string) (created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }

	haveCA, err := allExist(path(DevCAFile), path(DevCAKeyFile))
	if err != nil {
		return false, err
	}
	var ca *CA
	if haveCA {
		if ca, err = LoadCA(path(DevCAFile), path(DevCAKeyFile)); err != nil {
			return false, err
		}
	} else {
		if ca, err = NewCA("proglog development CA"); err != nil {
			return false, err
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return false, err
		}
		// Key first: a crash between the two writes leaves no CA
		// certificate, so the next start makes a fresh pair.
		if err := writeFileAtomic(path(DevCAKeyFile), keyPEM, 0o600); err != nil {
			return false, err
		}
		if err := writeFileAtomic(path(DevCAFile), ca.CertPEM, 0o644); err != nil {
			return false, err
		}
		created = true
	}

	type leaf struct {
		cert, key string
		issue     func() ([]byte, []byte, error)
	}
	leaves := []leaf{
		{DevServerFile, DevServerKeyFile, func() ([]byte, []byte, error) { return ca.IssueServer("localhost", devServerHosts) }},
		{DevClientFile, DevClientKeyFile, func() ([]byte, []byte, error) { return ca.IssueClient(DevClientName) }},
	}
	clientIssued := false
	for _, l := range leaves {
		have, err := allExist(path(l.cert), path(l.key))
		if err != nil {
			return created, err
		}
		if have && haveCA {
			continue
		}
		certPEM, keyPEM, err := l.issue()
		if err != nil {
			return created, err
		}
		if err := writeFileAtomic(path(l.key), keyPEM, 0o600); err != nil {
			return created, err
		}
		if err := writeFileAtomic(path(l.cert), certPEM, 0o644); err != nil {
			return created, err
		}
		created = true
		if l.cert == DevClientFile {
			clientIssued = true
		}
	}

	haveP12, err := allExist(path(DevClientP12File))
	if err != nil {
		return created, err
	}
	if haveP12 && !clientIssued {
		return created, nil
	}
	certPEM, err := os.ReadFile(path(DevClientFile))
	if err != nil {
		return created, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(path(DevClientKeyFile))
	if err != nil {
		return created, fmt.Errorf("pki: %w", err)
	}
	pfx, err := EncodePKCS12(certPEM, keyPEM, ca.CertPEM, DevP12Password)
	if err != nil {
		return created, err
	}
	if err := writeFileAtomic(path(DevClientP12File), pfx, 0o600); err != nil {
		return created, err
	}
	return true, nil
}

func allExist(paths ...string) (bool, error) {
	for _, p := range paths {
		_, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("pki: %w", err)
		}
	}
	return true, nil
}

// writeFileAtomic writes data to a temporary file and renames it over path,
// so a crash never leaves a half-written certificate or key behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
