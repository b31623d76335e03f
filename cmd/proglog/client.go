package main

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/proglog/proglog/client"
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

	env *env // for the client's tracing (env.clientTracing)
}

func (c *clientFlags) register(fs *pflag.FlagSet, e *env) {
	c.env = e
	fs.StringVar(&c.addr, "addr", defaultAddr, "server address host:port (the client finds the cluster's other members from it)")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "where the development identity lives (<data-dir>/certs)")
	fs.StringVar(&c.ca, "ca", "", "CA certificate that signed the server's (default <data-dir>/certs/ca.pem if it exists)")
	fs.StringVar(&c.cert, "cert", "", "client certificate (default <data-dir>/certs/root.pem if it exists)")
	fs.StringVar(&c.key, "key", "", "client key (default <data-dir>/certs/root-key.pem if it exists)")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext HTTP/2, for a server started with --insecure")
	fs.StringVar(&c.protocol, "protocol", "grpc", "RPC protocol: grpc, connect or grpcweb")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for connecting and for each unary call (0 = none)")
}

// How the CLI's client retries. A command makes a few attempts, enough to
// ride out a leader election (about two Raft timeouts) but failing within
// about two seconds when nothing answers; consume --follow keeps trying
// for as long as it runs, as a tail should.
var (
	oneShotRetry = retryPolicy{retries: 6, backoff: client.Backoff{Initial: 50 * time.Millisecond, Max: time.Second}}
	followRetry  = retryPolicy{retries: math.MaxInt32, backoff: client.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}}
)

type retryPolicy struct {
	retries int
	backoff client.Backoff
}

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

// config checks the flags and builds the client's configuration; it does
// not touch the network.
func (c *clientFlags) config(rp retryPolicy) (client.Config, error) {
	cfg := client.Config{Addrs: []string{c.addr}, Retries: rp.retries, Backoff: rp.backoff}
	switch c.protocol {
	case "grpc":
		cfg.Protocol = client.ProtocolGRPC
	case "grpcweb", "grpc-web":
		cfg.Protocol = client.ProtocolGRPCWeb
	case "connect":
		cfg.Protocol = client.ProtocolConnect
	default:
		return cfg, usagef("--protocol %q: want grpc, connect or grpcweb", c.protocol)
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return cfg, usagef("--addr %q: want host:port", c.addr)
	}
	if c.insecure {
		if c.ca != "" || c.cert != "" || c.key != "" {
			return cfg, usagef("--insecure cannot be combined with --ca, --cert or --key")
		}
		return cfg, nil
	}
	ca, cert, key := c.ca, c.cert, c.key
	var err error
	if ca == "" {
		if ca, err = c.devFile(pki.DevCAFile); err != nil {
			return cfg, err
		}
	}
	if cert == "" && key == "" {
		if cert, err = c.devFile(pki.DevClientFile); err != nil {
			return cfg, err
		}
		if key, err = c.devFile(pki.DevClientKeyFile); err != nil {
			return cfg, err
		}
		if cert == "" || key == "" {
			cert, key = "", ""
		}
	}
	if (cert == "") != (key == "") {
		return cfg, usagef("--cert and --key go together")
	}
	if cfg.TLS, err = pki.ClientTLSConfig(ca, cert, key); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// connect makes a client of the cluster --addr belongs to, within
// --timeout.
func (c *clientFlags) connect(ctx context.Context, cfg client.Config) (*client.Client, error) {
	if c.env != nil && cfg.TracerProvider == nil {
		tp, err := c.env.clientTracing(ctx)
		if err != nil {
			return nil, err
		}
		cfg.TracerProvider = tp
	}
	ctx, cancel := unaryContext(ctx, c.timeout)
	defer cancel()
	return client.New(ctx, cfg)
}

// dial checks the flags and connects: config, then connect.
func (c *clientFlags) dial(ctx context.Context, rp retryPolicy) (*client.Client, error) {
	cfg, err := c.config(rp)
	if err != nil {
		return nil, err
	}
	return c.connect(ctx, cfg)
}

// unaryContext bounds one call by --timeout (0: no bound).
func unaryContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}
