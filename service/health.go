package service

import "connectrpc.com/grpchealth"

// WritesHealthService is a gRPC health check service name that says
// whether this node takes writes: SERVING normally, NOT_SERVING while its
// disk is full (cluster.ErrDiskFull: appends are refused, reads go on).
// "" and log.v1.LogService stay SERVING meanwhile, so a liveness or
// readiness probe on them keeps the node in rotation for reads; probe this
// name to stop sending it writes. It is unknown (NOT_FOUND) until
// SetWritable is first called, which a node that can report it does at
// start.
const WritesHealthService = "proglog.Writes"

// SetWritable sets what the health check reports for WritesHealthService.
func (s *Service) SetWritable(writable bool) {
	status := grpchealth.StatusNotServing
	if writable {
		status = grpchealth.StatusServing
	}
	s.health.SetStatus(WritesHealthService, status)
}
