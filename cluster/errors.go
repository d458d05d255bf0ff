package cluster

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the peer service. peerStatus maps them to gRPC codes, in this
// one place.
var (
	// ErrMalformed: a peer sent a message that breaks the protocol or holds
	// an invalid instance (InvalidArgument).
	ErrMalformed = errors.New("cluster: malformed peer message")
	// ErrNoState: this node holds no state of the asked owner (NotFound).
	ErrNoState = errors.New("cluster: no state of that owner")
	// errNoSource: no peer could provide a state to repair a gap.
	errNoSource = errors.New("cluster: no peer could provide the state")
)

// malformed wraps ErrMalformed with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// peerStatus converts a peer service error into a gRPC status error.
func peerStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMalformed):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoState):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrTransferLimit):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, "cluster: internal error; the peer's log has the detail")
}
