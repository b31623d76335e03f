package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/pki"
)

// clientFlags are the connection flags every client command shares.
type clientFlags struct {
	addr     string
	dataDir  string
	ca       string
	cert     string
	key      string
	insecure bool
	protocol string
	timeout  time.Duration
}

func (c *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "addr", defaultAddr, "server address host:port")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "where the development identity lives (<data-dir>/certs)")
	fs.StringVar(&c.ca, "ca", "", "CA certificate that signed the server's (default <data-dir>/certs/ca.pem if it exists)")
	fs.StringVar(&c.cert, "cert", "", "client certificate (default <data-dir>/certs/root.pem if it exists)")
	fs.StringVar(&c.key, "key", "", "client key (default <data-dir>/certs/root-key.pem if it exists)")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext HTTP/2, for a server started with --insecure")
	fs.StringVar(&c.protocol, "protocol", "grpc", "RPC protocol: grpc, connect or grpcweb")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for connecting and for each unary call (0 = none)")
}

// conn is a client for one server, with its own HTTP/2 connection pool.
type conn struct {
	logv1connect.LogServiceClient
	transport *http.Transport
	timeout   time.Duration
}

// Close drops the idle connections.
func (c *conn) Close() { c.transport.CloseIdleConnections() }

// devFile returns <data-dir>/certs/name if it exists, else "".
func (c *clientFlags) devFile(name string) (string, error) {
	p := filepath.Join(c.dataDir, "certs", name)
	switch _, err := os.Stat(p); {
	case err == nil:
		return p, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	default:
		return "", err
	}
}

func (c *clientFlags) options() ([]connect.ClientOption, error) {
	opts := []connect.ClientOption{connect.WithReadMaxBytes(64 << 20)}
	switch c.protocol {
	case "grpc":
		opts = append(opts, connect.WithGRPC())
	case "grpcweb", "grpc-web":
		opts = append(opts, connect.WithGRPCWeb())
	case "connect":
	default:
		return nil, usagef("--protocol %q: want grpc, connect or grpcweb", c.protocol)
	}
	return opts, nil
}

// dial builds a client; it does not touch the network yet.
func (c *clientFlags) dial() (*conn, error) {
	opts, err := c.options()
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return nil, usagef("--addr %q: want host:port", c.addr)
	}
	dialer := &net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: c.timeout,
		MaxIdleConnsPerHost: 4,
		// Pings notice a dead server on an idle tail.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
	}
	var protocols http.Protocols
	scheme := "https"
	if c.insecure {
		if c.ca != "" || c.cert != "" || c.key != "" {
			return nil, usagef("--insecure cannot be combined with --ca, --cert or --key")
		}
		protocols.SetUnencryptedHTTP2(true)
		scheme = "http"
	} else {
		ca, cert, key := c.ca, c.cert, c.key
		if ca == "" {
			if ca, err = c.devFile(pki.DevCAFile); err != nil {
				return nil, err
			}
		}
		if cert == "" && key == "" {
			if cert, err = c.devFile(pki.DevClientFile); err != nil {
				return nil, err
			}
			if key, err = c.devFile(pki.DevClientKeyFile); err != nil {
				return nil, err
			}
			if cert == "" || key == "" {
				cert, key = "", ""
			}
		}
		if (cert == "") != (key == "") {
			return nil, usagef("--cert and --key go together")
		}
		cfg, err := pki.ClientTLSConfig(ca, cert, key)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
		protocols.SetHTTP2(true)
	}
	tr.Protocols = &protocols
	client := logv1connect.NewLogServiceClient(&http.Client{Transport: tr}, fmt.Sprintf("%s://%s", scheme, c.addr), opts...)
	return &conn{LogServiceClient: client, transport: tr, timeout: c.timeout}, nil
}
