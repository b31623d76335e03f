package main

import (
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/spf13/cobra"

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
			var protocols http.Protocols
			scheme := "https://"
			if cfg.TLS == nil {
				scheme = "http://"
				protocols.SetUnencryptedHTTP2(true)
			} else {
				protocols.SetHTTP2(true)
			}
			if serverName != "" && cfg.TLS != nil {
				cfg.TLS = cfg.TLS.Clone()
				cfg.TLS.ServerName = serverName
			}
			tr := &http.Transport{TLSClientConfig: cfg.TLS, Protocols: &protocols}
			defer tr.CloseIdleConnections()
			opt := connect.WithGRPC()
			switch cf.protocol {
			case "connect":
				opt = nil
			case "grpcweb", "grpc-web":
				opt = connect.WithGRPCWeb()
			}
			var opts []connect.ClientOption
			if opt != nil {
				opts = append(opts, opt)
			}
			hc := grpchealth.NewClient(&http.Client{Transport: tr}, scheme+cf.addr, opts...)
			ctx, cancel := unaryContext(cmd.Context(), cf.timeout)
			defer cancel()
			resp, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: svc})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, strings.ToUpper(resp.Status.String())) // as gRPC names it: SERVING
			if resp.Status != grpchealth.StatusServing {
				return fmt.Errorf("health service %q of %s is %s", svc, cf.addr, resp.Status)
			}
			return nil
		},
	}
	cf.register(cmd.Flags(), e)
	cmd.Flags().StringVar(&serverName, "server-name", "", "the name to check the server's certificate against (default: the host of --addr), e.g. a Service's DNS name when a probe dials 127.0.0.1")
	cmd.Flags().StringVar(&svc, "service", "", `health service to ask: "" (liveness), `+service.ReadyHealthService+` (readiness), `+service.WritesHealthService)
	return cmd
}
