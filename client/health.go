package client

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/grpchealth"
)

// CheckHealth asks the one server cfg.Addrs names for the gRPC health of
// service ("" is the whole server): no discovery and no retries, so that a
// probe learns about that node only. It needs no client certificate (the
// health check is open to anyone), only cfg.TLS's roots.
func CheckHealth(ctx context.Context, cfg Config, service string) (grpchealth.Status, error) {
	if len(cfg.Addrs) != 1 {
		return grpchealth.StatusUnknown, errors.New("client: CheckHealth asks one server: give one address")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := newTransport(cfg)
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr}
	}
	resp, err := grpchealth.NewClient(hc, scheme(cfg)+cfg.Addrs[0], protocolOptions(cfg.Protocol)...).
		Check(ctx, &grpchealth.CheckRequest{Service: service})
	if err != nil {
		return grpchealth.StatusUnknown, err
	}
	return resp.Status, nil
}
