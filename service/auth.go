package service

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
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

// access is who may reach an endpoint, checked by URL path before the
// body is read: a caller whom some rule lets perform one of actions on
// some topic (Authorizer.AllowedAny), or, for cluster endpoints, on every
// topic (AllowedCluster). The handlers then check the request's own topic.
type access struct {
	actions []string // any one suffices; none: open to everyone
	cluster bool     // AllowedCluster rather than AllowedAny
	// peer: a peer node's forwarded request passes (see peerForward).
	peer bool
}

var (
	openAccess    = access{}
	produceAccess = access{actions: []string{ActionProduce}, peer: true}
	consumeAccess = access{actions: []string{ActionConsume}, peer: true}
	adminAccess   = access{actions: []string{ActionAdmin}, peer: true}
	clusterAdmin  = access{actions: []string{ActionAdmin}, cluster: true}
)

// procedureAccess maps each LogService procedure to who may call it.
var procedureAccess = map[string]access{
	logv1connect.LogServiceProduceProcedure:          produceAccess,
	logv1connect.LogServiceProduceBatchProcedure:     produceAccess,
	logv1connect.LogServiceProduceStreamProcedure:    produceAccess,
	logv1connect.LogServiceConsumeProcedure:          consumeAccess,
	logv1connect.LogServiceConsumeStreamProcedure:    consumeAccess,
	logv1connect.LogServiceGetStatsProcedure:         consumeAccess,
	logv1connect.LogServiceGetOffsetForTimeProcedure: consumeAccess,
	logv1connect.LogServiceGetServersProcedure:       consumeAccess,
	logv1connect.LogServiceListTopicsProcedure:       {actions: []string{ActionConsume, ActionProduce}},
	logv1connect.LogServiceDescribeTopicProcedure:    {actions: []string{ActionConsume}},
	logv1connect.LogServiceCreateTopicProcedure:      adminAccess,
	logv1connect.LogServiceUpdateTopicProcedure:      adminAccess,
	logv1connect.LogServiceDeleteTopicProcedure:      adminAccess,
	logv1connect.LogServiceMovePartitionProcedure:    adminAccess,
	logv1connect.LogServiceRemoveNodeProcedure:       {actions: []string{ActionAdmin}, cluster: true, peer: true},
	logv1connect.LogServiceWhoAmIProcedure:           openAccess,
}

// accessFor returns who may reach a request's endpoint and whether it is
// an RPC (which gets a protocol-specific error).
func accessFor(urlPath string) (a access, rpc bool) {
	p := path.Clean(urlPath)
	if a, ok := procedureAccess[p]; ok {
		return a, true
	}
	switch {
	case strings.HasPrefix(p, "/"+grpcreflect.ReflectV1ServiceName+"/"),
		strings.HasPrefix(p, "/"+grpcreflect.ReflectV1AlphaServiceName+"/"):
		return clusterAdmin, true
	case strings.HasPrefix(p, "/"+grpchealth.HealthV1ServiceName+"/"):
		return openAccess, true
	case p == metricsPath:
		return clusterAdmin, false
	case strings.HasPrefix(p, "/"+logv1connect.LogServiceName+"/"):
		// An unknown method: nothing is decoded, the handler answers
		// Unimplemented.
		return openAccess, true
	}
	return openAccess, false // the dashboard's static files
}

// procedureLabel names a refused RPC in metrics: a known procedure, or
// "other", so that callers cannot mint label values with made-up paths.
func procedureLabel(urlPath string) string {
	p := path.Clean(urlPath)
	if _, ok := procedureAccess[p]; ok {
		return p
	}
	switch p {
	case "/" + grpcreflect.ReflectV1ServiceName + "/ServerReflectionInfo",
		"/" + grpcreflect.ReflectV1AlphaServiceName + "/ServerReflectionInfo":
		return p
	}
	return "other"
}

// ForwardedHeader marks a request a node forwards to a peer (an append to
// the leader, a read or a topic change to the node that can answer it); its
// value names the forwarding node (for the peer's logs). It grants rights
// only together with a node certificate: see peerForward.
const ForwardedHeader = "Proglog-Forwarded-By"

// RelayHeader marks a forwarded produce whose sender hosts no replica of
// the partition and so could not know its leader (Forwarder.Relay): the
// replica that receives it may forward it once more, to its leader, and
// without the mark, so a request makes at most two hops.
const RelayHeader = "Proglog-Forward-Relay"

// identity is who made a request, as the middleware established it.
type identity struct {
	subject       string
	authenticated bool
	// forwarded: a peer node forwarded this request (a node certificate
	// and ForwardedHeader). It may produce, consume and change topics, and
	// is never forwarded again, unless relayed.
	forwarded bool
	// relayed: forwarded with RelayHeader; an append a follower refuses
	// may go on to its leader (one more hop).
	relayed bool
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
	fwd := peerForward(leaf, r.Header)
	return identity{subject: cn, authenticated: true, forwarded: fwd, relayed: fwd && r.Header.Get(RelayHeader) != ""}
}

// peerForward reports whether a request is one another node of the
// cluster forwards: it carries ForwardedHeader and its verified certificate
// may authenticate a server. Node certificates (pki.IssueServer) have
// server-auth usage and chain to the cluster's CA; user certificates
// (pki.IssueClient) have client-auth usage only, so a user who sends the
// header gains nothing. The forwarding node already checked the original
// caller's rights on the request's topic.
func peerForward(leaf *x509.Certificate, h http.Header) bool {
	return h.Get(ForwardedHeader) != "" && slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

// reachable applies the early, by-path check: a peer's forwarded request
// passes where a.peer says so; otherwise some rule must allow one of
// a.actions somewhere (on "*" for cluster endpoints).
func (s *Service) reachable(id identity, a access) bool {
	if len(a.actions) == 0 || id.forwarded && a.peer {
		return true
	}
	for _, action := range a.actions {
		if a.cluster && s.authz.AllowedCluster(id.subject, action) ||
			!a.cluster && s.authz.AllowedAny(id.subject, action) {
			return true
		}
	}
	return false
}

// authorize checks the caller's right to perform action on topic (its
// name normalized: "" is "default"), once the handler has decoded the
// request. A peer's forwarded request may produce, consume and change
// topics: the node that forwarded it checked the original caller.
func (s *Service) authorize(ctx context.Context, topic, action string) error {
	id := identityOf(ctx)
	if id.forwarded && (action == ActionProduce || action == ActionConsume || action == ActionAdmin) {
		return nil
	}
	if s.authz.Allowed(id.subject, topic, action) {
		return nil
	}
	return denied(id, fmt.Sprintf("%q on topic %q", action, topic))
}

// denied is the refusal of what: Unauthenticated for an anonymous caller,
// PermissionDenied for an authenticated one.
func denied(id identity, what string) error {
	code := connect.CodePermissionDenied
	if !id.authenticated {
		code = connect.CodeUnauthenticated
	}
	return connect.NewError(code, fmt.Errorf("subject %q may not %s", id.subject, what))
}

func identityOf(ctx context.Context) identity {
	id, ok := ctx.Value(identityKey{}).(identity)
	if !ok {
		return identity{subject: Anonymous}
	}
	return id
}

// isForwarded reports whether ctx belongs to a request a peer forwarded.
func isForwarded(ctx context.Context) bool { return identityOf(ctx).forwarded }

// isRelayed reports whether ctx belongs to a relayed produce (RelayHeader).
func isRelayed(ctx context.Context) bool { return identityOf(ctx).relayed }

// authenticate establishes the caller's identity and checks the ACL by URL
// path before anything is decompressed or decoded.
func (s *Service) authenticate(next http.Handler) http.Handler {
	errWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := identify(r)
		a, rpc := accessFor(r.URL.Path)
		if !s.reachable(id, a) {
			err := denied(id, quoteJoin(a.actions))
			code := connect.CodeOf(err)
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
		if len(a.actions) == 0 && rpc {
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

// quoteJoin names the actions a refused caller lacks: "produce", or
// "consume" or "produce".
func quoteJoin(actions []string) string {
	q := make([]string, len(actions))
	for i, a := range actions {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, " or ")
}
