// Command proglog runs a proglog node (serve) and talks to one (produce,
// consume, stats, whoami, bench), and makes the certificates mutual TLS
// needs (certs). It only wires packages together: serve turns its flags
// into a node.Config, and package node assembles the node from logstore
// (the log), service (the RPC server), acl (the policy), pki
// (certificates), cluster (replication) and membership (gossip), runs it
// and stops it.
//
// Every flag can also come from the environment, as PROGLOG_<FLAG> with
// dashes turned into underscores (PROGLOG_DATA_DIR), or from a config file
// given with --config (or PROGLOG_CONFIG). A flag on the command line wins
// over the environment, which wins over the file, which wins over the
// default. The file holds one "name = value" a line, names being flag names
// without dashes in front; '#' starts a comment line:
//
//	# proglog.conf
//	addr = 0.0.0.0:8400
//	data-dir = /var/lib/proglog
//	sync = always
//	retention-bytes = 10GiB
//
// Exit codes: 0 success, 1 error, 2 usage error, 3 permission or
// authentication denied, 4 (serve) the node's Raft log is damaged and it
// refused to start.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/internal/memlimit"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/tracing"
)

// Exit codes scripts can rely on.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitDenied = 3
	// exitRaftLogCorrupt: serve found its own Raft log damaged and refused
	// to start; the message says where and what the operator can do.
	exitRaftLogCorrupt = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default so a second one kills a
	// shutdown that hangs.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], &env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		reexec: memlimit.ExecLazy,
	})
	stop()
	os.Exit(code)
}

// env is what a command may touch of the outside world, so tests can run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// reexec, when set (by main only: in a test it would start the test
	// binary again), lets serve start the program afresh with the runtime
	// settings a server wants (memlimit.ExecLazy); it returns only if it
	// did not.
	reexec func() error

	// traces is the client commands' tracing, made by clientTracing on
	// first use and shut down by run.
	traces *tracing.Provider
}

// clientTracing returns the tracer provider of the client commands, as the
// OTEL_* environment configures it (nil when it does not): their calls
// are spans of the service "proglog-cli" unless OTEL_SERVICE_NAME says
// otherwise.
func (e *env) clientTracing(ctx context.Context) (trace.TracerProvider, error) {
	if e.traces == nil {
		p, err := tracing.New(ctx, tracing.Config{ServiceName: "proglog-cli", ServiceVersion: versionString()})
		if err != nil {
			return nil, usageError{err}
		}
		e.traces = p
	}
	if !e.traces.Enabled() {
		return nil, nil
	}
	return e.traces.TracerProvider(), nil
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, e *env) int {
	root := newRootCmd(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if e.traces != nil {
		// Export the command's spans before exiting.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if serr := e.traces.Shutdown(sctx); serr != nil {
			fmt.Fprintf(e.stderr, "proglog: %s\n", oneLine(serr.Error()))
		}
		cancel()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "proglog: %s\n", oneLine(message(err)))
	return exitCode(err)
}

// message is err as the CLI shows it. A server's answer (or a transport
// failure: a Connect error anywhere in the chain) comes first, as
// "<code>: <message>", and what the client was doing when it failed follows
// in parentheses, so errors still start with their code.
func message(err error) string {
	full := err.Error()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return full
	}
	own := ce.Error()
	doing, ok := strings.CutSuffix(full, own)
	if !ok {
		return full
	}
	doing = strings.ReplaceAll(strings.TrimSpace(doing), "\n", "; ")
	doing = strings.TrimSuffix(doing, ":")
	if doing == "" {
		return own
	}
	return own + " (" + doing + ")"
}

// usageError marks a mistake in the command line, the environment or the
// config file: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case isCobraUsage(err):
		return exitUsage
	case errors.Is(err, node.ErrConfig):
		return exitUsage // the flags do not fit the data dir
	case errors.Is(err, cluster.ErrRaftLogCorrupt):
		return exitRaftLogCorrupt
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		return exitDenied
	}
	return exitError
}

// isCobraUsage recognizes the errors cobra makes itself (it has no types
// for them).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand", "required flag", "invalid argument", "flag needs an argument", "accepts ", "requires at least", "requires at most"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// oneLine keeps error output to a single line, whatever a server sent.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
