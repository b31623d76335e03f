package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/proglog/proglog/pki"
)

// quickstartPolicy lets the development identity do everything.
const quickstartPolicy = "# proglog ACL: p, <subject>, <object: a topic, a glob such as orders.* or *>, <action: produce|consume|admin|*>\n" +
	"# Written by the quickstart; the development client certificate is \"root\".\n" +
	"p, root, *, *\n"

// quickstart makes the development identity in <DataDir>/certs and the
// ACL that lets it do everything, unless they exist, and returns the
// server's certificate, key and CA files.
func (n *Node) quickstart() (certFile, keyFile, caFile string, err error) {
	certDir := filepath.Join(n.cfg.DataDir, "certs")
	created, err := pki.EnsureDevIdentity(certDir)
	if err != nil {
		return "", "", "", err
	}
	wroteACL, err := writeIfMissing(n.cfg.ACL, quickstartPolicy)
	if err != nil {
		return "", "", "", err
	}
	if created || wroteACL {
		n.logger.Info("quickstart: created the development identity", "certs", certDir, "acl", n.cfg.ACL)
	}
	n.certDir, n.created = certDir, created
	return filepath.Join(certDir, pki.DevServerFile), filepath.Join(certDir, pki.DevServerKeyFile), filepath.Join(certDir, pki.DevCAFile), nil
}

// writeIfMissing creates path with text unless it exists.
func writeIfMissing(path, text string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}
