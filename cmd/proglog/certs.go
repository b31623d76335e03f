package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/pki"
)

func newCertsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA, server and client certificates for mutual TLS",
		Long: `Make the certificates proglog's mutual TLS needs, as PEM files in --dir:
  certs init   --dir D                      D/ca.pem, D/ca-key.pem
  certs server --dir D --host h [--host h2] D/server.pem, D/server-key.pem
  certs client --dir D --name alice [--p12] D/alice.pem, D/alice-key.pem [, D/alice.p12]
A client's identity is its certificate's Common Name (--name), which the ACL
file names. Keys are written with mode 0600. Existing files are not
overwritten unless --force is given.`,
		Args: wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("certs needs a subcommand: init, server or client")
		},
	}
	cmd.AddCommand(newCertsInitCmd(e), newCertsServerCmd(e), newCertsClientCmd(e))
	return cmd
}

func newCertsInitCmd(e *env) *cobra.Command {
	var dir, name string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a certificate authority (ca.pem, ca-key.pem)",
		Args:  wantNoArgs,
		RunE: func(*cobra.Command, []string) error {
			ca, err := pki.NewCA(name)
			if err != nil {
				return err
			}
			key, err := ca.KeyPEM()
			if err != nil {
				return err
			}
			return writeOutputs(e, dir, force, []output{
				{name: "ca.pem", data: ca.CertPEM, mode: 0o644},
				{name: "ca-key.pem", data: key, mode: 0o600},
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory to write into")
	cmd.Flags().StringVar(&name, "name", "proglog CA", "the CA's common name")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newCertsServerCmd(e *env) *cobra.Command {
	var dir, name, out string
	var hosts []string
	var force bool
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Make a server certificate for the given hosts, signed by the CA in --dir",
		Args:  wantNoArgs,
		RunE: func(*cobra.Command, []string) error {
			if len(hosts) == 0 {
				return usagef("certs server needs at least one --host")
			}
			if name == "" {
				name = hosts[0]
			}
			ca, err := loadCA(dir)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.IssueServer(name, hosts)
			if err != nil {
				return err
			}
			return writeOutputs(e, dir, force, []output{
				{name: out + ".pem", data: certPEM, mode: 0o644},
				{name: out + "-key.pem", data: keyPEM, mode: 0o600},
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory holding ca.pem and ca-key.pem, and to write into")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP the certificate is valid for (repeat or comma-separate)")
	cmd.Flags().StringVar(&name, "name", "", "common name (default: the first host)")
	cmd.Flags().StringVar(&out, "out", "server", "base name of the files written")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newCertsClientCmd(e *env) *cobra.Command {
	var dir, name, password string
	var p12, force bool
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Make a client certificate whose common name is the identity the ACL sees",
		Args:  wantNoArgs,
		RunE: func(*cobra.Command, []string) error {
			if name == "" {
				return usagef("certs client needs --name")
			}
			if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
				return usagef("--name %q cannot be used as a file name", name)
			}
			ca, err := loadCA(dir)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.IssueClient(name)
			if err != nil {
				return err
			}
			outs := []output{
				{name: name + ".pem", data: certPEM, mode: 0o644},
				{name: name + "-key.pem", data: keyPEM, mode: 0o600},
			}
			if p12 {
				data, err := pki.EncodePKCS12(certPEM, keyPEM, ca.CertPEM, password)
				if err != nil {
					return err
				}
				outs = append(outs, output{name: name + ".p12", data: data, mode: 0o600})
			}
			return writeOutputs(e, dir, force, outs)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory holding ca.pem and ca-key.pem, and to write into")
	cmd.Flags().StringVar(&name, "name", "", "common name: the subject the ACL names")
	cmd.Flags().BoolVar(&p12, "p12", false, "also write a PKCS#12 bundle for browsers")
	cmd.Flags().StringVar(&password, "password", pki.DevP12Password, "password of the PKCS#12 bundle")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func loadCA(dir string) (*pki.CA, error) {
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("%w (run proglog certs init --dir %s first)", err, dir)
	}
	return ca, nil
}

type output struct {
	name string
	data []byte
	mode os.FileMode
}

// writeOutputs writes every file or, if one exists and force is off,
// none of them.
func writeOutputs(e *env, dir string, force bool, outs []output) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !force {
		for _, o := range outs {
			p := filepath.Join(dir, o.name)
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for _, o := range outs {
		p := filepath.Join(dir, o.name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, o.data, o.mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, o.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %s\n", p)
	}
	return nil
}
