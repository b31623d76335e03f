package service

import "connectrpc.com/grpchealth"

// WritesHealthService is a gRPC health check service name that says
// whether this node takes writes: SERVING normally, NOT_SERVING while its
// disk is full (cluster.ErrDiskFull: appends are refused, reads go on),
// after it failed to apply committed entries (until restarted), or while
// its record store cannot be written (cluster.Log.CanWrite).
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

// ReadyHealthService is a gRPC health check service name for readiness:
// SERVING only while the node serves everything it is responsible for. In
// a cluster that is: it is a member of the system group and of every
// partition group the catalogue places on it, each has a leader it has
// heard from lately, it has applied everything it knows to be committed,
// and it can write (see WritesHealthService). A node that just (re)started
// is NOT_SERVING until its peers have reached it and it has caught up, so
// a rolling restart that waits for it before stopping the next node never
// takes two voters of a group down at once. A standalone node is ready
// once it serves. NOT_SERVING from the start of a shutdown.
const ReadyHealthService = "proglog.Ready"

// SetReady sets what the health check reports for ReadyHealthService.
// While the service is not serving (SetServing(false)) it stays
// NOT_SERVING.
func (s *Service) SetReady(ready bool) {
	status := grpchealth.StatusNotServing
	if ready && !s.draining.Load() {
		status = grpchealth.StatusServing
	}
	s.health.SetStatus(ReadyHealthService, status)
}
