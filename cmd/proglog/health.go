package main

import (
	"fmt"
	"strings"

	"connectrpc.com/grpchealth"
	"github.com/spf13/cobra"

	"github.com/proglog/proglog/client"
	"github.com/proglog/proglog/service"
)

func newHealthCmd(e *env) *cobra.Command {
	var (
		cf         clientFlags
		svc        string
		serverName string
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Ask one node's gRPC health check; exit 0 if SERVING (for probes)",
		Long: `Ask the node at --addr (that node only: no discovery, no retries) for the
gRPC health of a service and print its status; exit 0 when SERVING, 1
otherwise. Anyone may ask, with or without a client certificate, so a
container's probe needs only --ca.

Services:
  ""                   liveness: the process serves (NOT_SERVING once it
                       shuts down)
  ` + service.ReadyHealthService + `        readiness: the node serves everything it is responsible
                       for: a member of every Raft group placed on it, a
                       leader heard from, caught up, writable
  ` + service.WritesHealthService + `       the node takes writes (NOT_SERVING while its disk is
                       full or it cannot apply)
  log.v1.LogService    as ""` + "\n" + exitCodesHelp,
		Args: wantNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.config(oneShotRetry)
			if err != nil {
				return err
			}
			if serverName != "" && cfg.TLS != nil {
				cfg.TLS = cfg.TLS.Clone()
				cfg.TLS.ServerName = serverName
			}
			ctx, cancel := unaryContext(cmd.Context(), cf.timeout)
			defer cancel()
			status, err := client.CheckHealth(ctx, cfg, svc)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, strings.ToUpper(status.String())) // as gRPC names it: SERVING
			if status != grpchealth.StatusServing {
				return fmt.Errorf("health service %q of %s is %s", svc, cf.addr, status)
			}
			return nil
		},
	}
	cf.register(cmd.Flags(), e)
	cmd.Flags().StringVar(&serverName, "server-name", "", "the name to check the server's certificate against (default: the host of --addr), e.g. a Service's DNS name when a probe dials 127.0.0.1")
	cmd.Flags().StringVar(&svc, "service", "", `health service to ask: "" (liveness), `+service.ReadyHealthService+` (readiness), `+service.WritesHealthService)
	return cmd
}
