package membership

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/proglog/proglog/pki"
)

// Reasons TLSVerifier refuses a member; each is wrapped with the details.
var (
	// ErrForeignCertificate: the member's certificate does not chain to the
	// cluster's CA (or is expired, or not for server authentication).
	ErrForeignCertificate = errors.New("membership: certificate not issued by the cluster's CA for a server")
	// ErrWrongAddress: the certificate is the cluster's but not valid for
	// the RPC address the member gossips.
	ErrWrongAddress = errors.New("membership: certificate not valid for the advertised address")
	// ErrPeerRefused: the member's server did not accept this node's
	// certificate, so it could not take part in Raft either.
	ErrPeerRefused = errors.New("membership: member refused this node's certificate")
	// ErrUnreachable: nothing answered TLS at the advertised address (not
	// listening yet, or not at all); the member is checked again on the
	// next reconcile.
	ErrUnreachable = errors.New("membership: advertised address unreachable")
)

// http2SettingsFrame is the type byte of an HTTP/2 SETTINGS frame, which
// an HTTP/2 server sends first on every connection.
const http2SettingsFrame = 0x4

// TLSVerifier returns a Verify for Config that proves a member holds a
// server certificate of the cluster's CA that is valid for the address it
// advertises, and that it trusts this node in return. It dials rpcAddr with
// dial (this node's own certificate and the cluster's CA as RootCAs, as the
// node dials Raft peers), asks for HTTP/2 by ALPN and sets ServerName to
// rpcAddr's host, so the handshake checks the chain to the CA, the server
// authentication usage, the validity period, that the certificate names
// that host (DNS name or IP address), and that the member holds its private
// key. It then reads the member's first HTTP/2 frame: a server that
// rejected this node's client certificate answers with a TLS alert instead.
//
// The member's node ID is not checked against the certificate: proglog's
// server certificates name hosts, not nodes (several nodes on one host may
// share one certificate, as the README's loopback cluster does), so the
// address is the identity the certificate vouches for.
func TLSVerifier(dial *tls.Config) VerifyFunc {
	base := dial.Clone()
	base.NextProtos = []string{"h2"}
	if base.MinVersion < tls.VersionTLS12 {
		base.MinVersion = tls.VersionTLS12
	}
	return func(ctx context.Context, _, rpcAddr string) error {
		return verifyTLS(ctx, base, rpcAddr)
	}
}

func verifyTLS(ctx context.Context, base *tls.Config, rpcAddr string) error {
	host, _, err := net.SplitHostPort(rpcAddr)
	if err != nil {
		return fmt.Errorf("membership: advertised address %q: %w", rpcAddr, err)
	}
	cfg := pki.WithServerName(base, host) // tells a reloading verifier (pki.Reloader.DialConfig) the name
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", rpcAddr)
	if err != nil {
		var (
			unknown   x509.UnknownAuthorityError
			invalid   x509.CertificateInvalidError
			hostname  x509.HostnameError
			verifyErr *tls.CertificateVerificationError
			opErr     *net.OpError
		)
		switch {
		case errors.As(err, &hostname):
			return fmt.Errorf("%w %s: %v", ErrWrongAddress, rpcAddr, hostname)
		case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &verifyErr):
			return fmt.Errorf("%w: %v", ErrForeignCertificate, err)
		case errors.As(err, &opErr) && opErr.Op == "dial", ctx.Err() != nil:
			return fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		return fmt.Errorf("membership: TLS handshake with %s: %w", rpcAddr, err)
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		return fmt.Errorf("membership: %s negotiated %q, not h2: not a proglog node's port", rpcAddr, p)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	conn.SetReadDeadline(deadline)
	var header [9]byte // an HTTP/2 frame header
	if _, err := io.ReadFull(conn, header[:]); err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return fmt.Errorf("%w: %s sent no HTTP/2 settings: %v", ErrUnreachable, rpcAddr, err)
		}
		return fmt.Errorf("%w: %v", ErrPeerRefused, err)
	}
	if header[3] != http2SettingsFrame {
		return fmt.Errorf("membership: %s did not start HTTP/2 with a SETTINGS frame: not a proglog node's port", rpcAddr)
	}
	return nil
}
