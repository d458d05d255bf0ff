package pushsvc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// How a request carries its token: gRPC metadata "authorization" with the
// value "Bearer <token>", as pushsvc/client.WithToken sends it.
const (
	// AuthMetadataKey is the metadata key of the token.
	AuthMetadataKey = "authorization"
	// AuthScheme prefixes the token in the metadata value.
	AuthScheme = "Bearer "
	// maxTokenLen bounds the token a request may present.
	maxTokenLen = 1024
)

// What the API asks of a principal (the README's "ACL tokens" section says
// the same for users):
//
//   - read on a service: ListInstances, Watch and MultiWatch watches of it;
//     ListServices lists only the services the principal can read. A watch
//     of every service (no names) needs read on every service (a * rule of
//     read or write, and no deny or narrower rule under it); it is refused,
//     not filtered.
//   - write on a service: Register, Deregister, Heartbeat, and SetStatus of
//     one instance or of a service, also on a Session stream.
//   - operator: SetStatus of every instance of the node (herald drain with
//     no -service), Join and ForceLeave.
//   - any principal (anonymous included): Members.
//
// Rules are checked when a request, a Session operation or a MultiWatch
// watch arrives, against the policy current at that moment (a reload
// applies to the next one). A Watch already streaming is not cut off by a
// reload.

// errBadAuth: the authorization metadata is there but malformed
// (Unauthenticated).
var errBadAuth = errors.New(`pushsvc: the authorization metadata must be "Bearer <token>", once`)

// SetACL replaces the access policy: every request checked from now on uses
// p. nil allows everything, as without Config.ACL. The agent calls it when it
// rereads -acl-file.
func (s *Server) SetACL(p *acl.Policy) { s.acl.Store(p) }

// ACL returns the current access policy, nil when everything is allowed.
func (s *Server) ACL() *acl.Policy { return s.acl.Load() }

// credential is what the interceptor found in a request's metadata.
type credential struct {
	present bool
	digest  [sha256.Size]byte
}

type credKey struct{}

// credentialOf reads the request's token from its metadata.
func credentialOf(ctx context.Context) (credential, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(AuthMetadataKey)
	switch {
	case len(vals) == 0:
		return credential{}, nil
	case len(vals) > 1 || len(vals[0]) > maxTokenLen+len(AuthScheme):
		return credential{}, errBadAuth
	}
	v := vals[0]
	// The scheme is case-insensitive (RFC 9110); the token may not be empty.
	if len(v) <= len(AuthScheme) || !strings.EqualFold(v[:len(AuthScheme)], AuthScheme) {
		return credential{}, errBadAuth
	}
	return credential{present: true, digest: acl.Digest(v[len(AuthScheme):])}, nil
}

// authenticate is the gRPC door's check of who calls: a request to the
// Herald service whose token the policy does not know, or that has none
// when the policy has no anonymous rules, ends here with Unauthenticated.
// Otherwise the credential goes on in the context, for allow.
func (s *Server) authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	p := s.acl.Load()
	if p == nil || !strings.HasPrefix(fullMethod, "/"+heraldpb.Herald_ServiceDesc.ServiceName+"/") {
		return ctx, nil // no ACL, or another service on the same server (the cluster's peers)
	}
	cred, err := credentialOf(ctx)
	if err == nil {
		_, err = p.Authenticate(cred.present, cred.digest)
	}
	if err != nil {
		return ctx, s.denied(err)
	}
	return context.WithValue(ctx, credKey{}, cred), nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// principal returns who the request acts as under the current policy, or
// nil when there is no policy (everything is allowed).
func (s *Server) principal(ctx context.Context) (*acl.Principal, error) {
	p := s.acl.Load()
	if p == nil {
		return nil, nil
	}
	cred, ok := ctx.Value(credKey{}).(credential)
	if !ok {
		// Not through the interceptor (a server built without
		// ServerOptions): read the metadata here.
		var err error
		if cred, err = credentialOf(ctx); err != nil {
			return nil, s.denied(err)
		}
	}
	pr, err := p.Authenticate(cred.present, cred.digest)
	if err != nil {
		return nil, s.denied(err)
	}
	return pr, nil
}

// allow returns nil when the request may have want on service, else the
// status error to return.
func (s *Server) allow(ctx context.Context, want acl.Access, service string) error {
	pr, err := s.principal(ctx)
	if err != nil || pr == nil {
		return err
	}
	if err := pr.Authorize(want, service); err != nil {
		return s.denied(err)
	}
	return nil
}

// allowOperator returns nil when the request's principal is an operator.
func (s *Server) allowOperator(ctx context.Context, what string) error {
	pr, err := s.principal(ctx)
	if err != nil || pr == nil {
		return err
	}
	if err := pr.RequireOperator(what); err != nil {
		return s.denied(err)
	}
	return nil
}

// allowWatch checks read on every watched name; no names (every service)
// needs read on every service.
func (s *Server) allowWatch(ctx context.Context, names []string) error {
	pr, err := s.principal(ctx)
	if err != nil || pr == nil {
		return err
	}
	if len(names) == 0 {
		if pr.CanReadAll() {
			return nil
		}
		return s.denied(fmt.Errorf("%w: %s cannot read every service, which a watch of all services needs; name the services to watch", acl.ErrDenied, pr))
	}
	for _, n := range names {
		if err := pr.Authorize(acl.Read, n); err != nil {
			return s.denied(err)
		}
	}
	return nil
}

// readable returns the filter ListServices applies: nil when every service
// may be listed.
func (s *Server) readable(ctx context.Context) (func(string) bool, error) {
	pr, err := s.principal(ctx)
	if err != nil || pr == nil || pr.CanReadAll() {
		return nil, err
	}
	return func(name string) bool { return pr.Access(name) >= acl.Read }, nil
}

// denied counts a refusal by its reason and returns it as a status error
// (codeOf maps the acl sentinels).
func (s *Server) denied(err error) error {
	reason := "permission"
	switch {
	case errors.Is(err, errBadAuth):
		reason = "malformed"
	case errors.Is(err, acl.ErrNoToken):
		reason = "no_token"
	case errors.Is(err, acl.ErrUnknownToken):
		reason = "unknown_token"
	}
	if s.aclDenied != nil {
		s.aclDenied.WithLabelValues(reason).Inc()
	}
	return toStatus(err)
}

// aclMetrics returns the ACL's collectors; each reason starts at 0 so that
// a rate() sees the first denial.
func (s *Server) aclMetrics() []prometheus.Collector {
	s.aclDenied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_acl_denied_total",
		Help: "API requests refused by the ACL, by reason: no_token, unknown_token, malformed (authorization metadata), permission.",
	}, []string{"reason"})
	for _, r := range []string{"no_token", "unknown_token", "malformed", "permission"} {
		s.aclDenied.WithLabelValues(r)
	}
	return []prometheus.Collector{s.aclDenied}
}
