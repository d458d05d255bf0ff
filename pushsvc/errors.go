package pushsvc

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/acl"
)

// codeOf maps an error to its gRPC code. It is the one place where the
// registry's sentinels and the membership hooks' become status codes.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, acl.ErrNoToken), errors.Is(err, acl.ErrUnknownToken), errors.Is(err, errBadAuth):
		return codes.Unauthenticated
	case errors.Is(err, acl.ErrDenied):
		return codes.PermissionDenied
	case errors.Is(err, registry.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, ErrUnknownMember):
		return codes.NotFound
	case errors.Is(err, registry.ErrNotOwner), errors.Is(err, ErrMemberNotFailed), errors.Is(err, ErrJoinFailed):
		return codes.FailedPrecondition
	case errors.Is(err, registry.ErrClosed), errors.Is(err, errServerClosed), errors.Is(err, registry.ErrNotDurable):
		return codes.Unavailable
	case errors.Is(err, registry.ErrLimit), errors.Is(err, errWatchLimit), errors.Is(err, errSlowWatcher):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// toStatus converts an error into a gRPC status error. The registry's
// messages already name the field (InvalidArgument), the id (NotFound) and
// the owner (FailedPrecondition). An unexpected error reaches the client as
// a generic Internal status; its detail stays in the agent's log (see
// logInternal).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codeOf(err)
	if code == codes.Internal {
		return &internalError{cause: err}
	}
	if code == codes.InvalidArgument {
		return withField(status.New(code, err.Error()), err).Err()
	}
	return status.Error(code, err.Error())
}

// internalError is an unexpected error: the client gets a generic status,
// the agent's log gets the cause.
type internalError struct{ cause error }

func (e *internalError) Error() string { return e.cause.Error() }
func (e *internalError) Unwrap() error { return e.cause }

// GRPCStatus is what grpc-go sends to the client.
func (e *internalError) GRPCStatus() *status.Status {
	return status.New(codes.Internal, "pushsvc: internal error; the agent's log has the detail")
}

// logInternal logs the cause of an internal error returned by an RPC.
func (s *Server) logInternal(method string, err error) {
	var ie *internalError
	if errors.As(err, &ie) {
		s.log.Error("internal error", "method", method, "err", ie.cause)
	}
}

func (s *Server) unaryErrorLog(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	s.logInternal(info.FullMethod, err)
	return resp, err
}

func (s *Server) streamErrorLog(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	s.logInternal(info.FullMethod, err)
	return err
}

// statusOf returns err as a *status.Status.
func statusOf(err error) *status.Status { return status.Convert(toStatus(err)) }

// errServerClosed ends watches and sessions when the server is closed.
var errServerClosed = errors.New("pushsvc: server closed")

// Errors the membership hooks (Config.Join, Config.ForceLeave) wrap to choose
// the RPC's code; pushsvc never imports the cluster, so the agent wraps the
// cluster's errors in them.
var (
	// ErrUnknownMember: force-leave named a node that is not a member
	// (NotFound).
	ErrUnknownMember = errors.New("pushsvc: not a member")
	// ErrMemberNotFailed: force-leave named a member that is alive or
	// leaving, or the agent itself (FailedPrecondition).
	ErrMemberNotFailed = errors.New("pushsvc: member has not failed")
	// ErrJoinFailed: the agent could not join any of the addresses
	// (FailedPrecondition: the request was fine, the targets were not; it is
	// not Unavailable, which says the agent itself could not be reached).
	ErrJoinFailed = errors.New("pushsvc: join failed")
)
