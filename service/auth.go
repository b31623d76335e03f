package service

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/proglog/proglog/gen/log/v1/logv1connect"
)

// Actions the ACL is asked about.
const (
	ActionProduce = "produce"
	ActionConsume = "consume"
	ActionAdmin   = "admin"
)

// Anonymous is the subject of a caller without a verified client certificate.
const Anonymous = "anonymous"

const metricsPath = "/metrics"

// procedureActions maps each LogService procedure to the action it needs;
// "" means open to everyone.
var procedureActions = map[string]string{
	logv1connect.LogServiceProduceProcedure:       ActionProduce,
	logv1connect.LogServiceProduceBatchProcedure:  ActionProduce,
	logv1connect.LogServiceProduceStreamProcedure: ActionProduce,
	logv1connect.LogServiceConsumeProcedure:       ActionConsume,
	logv1connect.LogServiceConsumeStreamProcedure: ActionConsume,
	logv1connect.LogServiceGetStatsProcedure:      ActionConsume,
	logv1connect.LogServiceGetServersProcedure:    ActionConsume,
	logv1connect.LogServiceWhoAmIProcedure:        "",
}

// actionFor returns the action a request needs ("" for open endpoints) and
// whether it is an RPC (which gets a protocol-specific error).
func actionFor(urlPath string) (action string, rpc bool) {
	p := path.Clean(urlPath)
	if a, ok := procedureActions[p]; ok {
		return a, true
	}
	switch {
	case strings.HasPrefix(p, "/"+grpcreflect.ReflectV1ServiceName+"/"),
		strings.HasPrefix(p, "/"+grpcreflect.ReflectV1AlphaServiceName+"/"):
		return ActionAdmin, true
	case strings.HasPrefix(p, "/"+grpchealth.HealthV1ServiceName+"/"):
		return "", true
	case p == metricsPath:
		return ActionAdmin, false
	case strings.HasPrefix(p, "/"+logv1connect.LogServiceName+"/"):
		// An unknown method: nothing is decoded, the handler answers
		// Unimplemented.
		return "", true
	}
	return "", false // the dashboard's static files
}

// procedureLabel names a refused RPC in metrics: a known procedure, or
// "other", so that callers cannot mint label values with made-up paths.
func procedureLabel(urlPath string) string {
	p := path.Clean(urlPath)
	if _, ok := procedureActions[p]; ok {
		return p
	}
	switch p {
	case "/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo",
		"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo":
		return p
	}
	return "other"
}

// ForwardedHeader marks an append a follower forwards to the leader; its
// value names the forwarding node (for the leader's logs). It grants rights
// only together with a node certificate: see peerForward.
const ForwardedHeader = "Proglog-Forwarded-By"

// identity is who made a request, as the middleware established it.
type identity struct {
	subject       string
	authenticated bool
	// forwarded: a peer node forwarded this append (a node certificate and
	// ForwardedHeader). It may produce, and is never forwarded again.
	forwarded bool
}

// requestControls lets a handler reach the HTTP exchange under its stream:
// a write deadline against slow consumers, and closing the request body to
// unblock a Receive when the stream must end.
type requestControls struct {
	rc        *http.ResponseController
	closeBody func() error // nil when closing would race the reader (HTTP/1)
	gate      *flushGate   // nil except for ConsumeStream and ProduceStream
}

type identityKey struct{}
type controlsKey struct{}

// Subject returns the caller's identity: the Common Name of its verified
// client certificate (authenticated) or "anonymous".
func Subject(ctx context.Context) (subject string, authenticated bool) {
	id, ok := ctx.Value(identityKey{}).(identity)
	if !ok {
		return Anonymous, false
	}
	return id.subject, id.authenticated
}

func controls(ctx context.Context) requestControls {
	c, _ := ctx.Value(controlsKey{}).(requestControls)
	return c
}

// identify reads the verified client certificate. A certificate without a
// Common Name, or one that claims to be "anonymous", authenticates nobody.
func identify(r *http.Request) identity {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return identity{subject: Anonymous}
	}
	leaf := r.TLS.VerifiedChains[0][0]
	cn := leaf.Subject.CommonName
	if cn == "" || cn == Anonymous {
		return identity{subject: Anonymous}
	}
	return identity{subject: cn, authenticated: true, forwarded: peerForward(leaf, r.Header)}
}

// peerForward reports whether a request is an append another node of the
// cluster forwards: it carries ForwardedHeader and its verified certificate
// may authenticate a server. Node certificates (pki.IssueServer) have
// server-auth usage and chain to the cluster's CA; user certificates
// (pki.IssueClient) have client-auth usage only, so a user who sends the
// header gains nothing. The forwarding follower already checked the
// original caller's right to produce.
func peerForward(leaf *x509.Certificate, h http.Header) bool {
	return h.Get(ForwardedHeader) != "" && slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

// allowed applies the ACL, with the one exception of peer nodes: they may
// forward appends, and read a record to heal their own copy of it
// (Forwarder.FetchRecord); they hold every record anyway.
func (s *Service) allowed(id identity, action string) bool {
	if id.forwarded && (action == ActionProduce || action == ActionConsume) {
		return true
	}
	return s.authz.Allowed(id.subject, action)
}

// isForwarded reports whether ctx belongs to an append a peer forwarded.
func isForwarded(ctx context.Context) bool {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id.forwarded
}

// authenticate establishes the caller's identity and checks the ACL by URL
// path before anything is decompressed or decoded.
func (s *Service) authenticate(next http.Handler) http.Handler {
	errWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := identify(r)
		action, rpc := actionFor(r.URL.Path)
		if action != "" && !s.allowed(id, action) {
			code := connect.CodePermissionDenied
			if !id.authenticated {
				code = connect.CodeUnauthenticated
			}
			err := connect.NewError(code, fmt.Errorf("subject %q may not %q", id.subject, action))
			if rpc {
				procedure := procedureLabel(r.URL.Path)
				s.metrics.observe(procedure, code.String(), time.Since(start))
				s.logAccess(r.Context(), procedure, id.subject, code.String(), time.Since(start))
			}
			if rpc && errWriter.IsSupported(r) {
				_ = errWriter.Write(w, r, err)
				return
			}
			status := http.StatusForbidden
			if code == connect.CodeUnauthenticated {
				status = http.StatusUnauthorized
			}
			http.Error(w, err.Error(), status)
			return
		}
		if action == "" && rpc {
			// Open to anyone: no one gets to make it buffer a large body.
			r.Body = http.MaxBytesReader(w, r.Body, smallRequestBytes)
		}
		ctrl := requestControls{rc: http.NewResponseController(w)}
		if r.ProtoMajor == 2 {
			// HTTP/2 request bodies may be closed while another goroutine
			// reads them; the read then fails at once.
			ctrl.closeBody = r.Body.Close
		}
		if r.URL.Path == logv1connect.LogServiceConsumeStreamProcedure || r.URL.Path == logv1connect.LogServiceProduceStreamProcedure {
			ctrl.gate = &flushGate{ResponseWriter: w}
			w = ctrl.gate
		}
		ctx := context.WithValue(r.Context(), identityKey{}, id)
		ctx = context.WithValue(ctx, controlsKey{}, ctrl)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
