package pushsvc

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// This file is the seam for Herald's other front doors (the HTTP API in
// pushsvc/httpapi): they call the same RPC handlers in process, so that
// validation, ACL checks (and their metrics), registry writes, watch fan-out
// and error codes are the gRPC API's own, not a copy of them.

// Local returns the Herald API served in process. A door puts the caller's
// token in the context as gRPC incoming metadata (AuthMetadataKey, with the
// value AuthScheme+token), exactly as a gRPC client sends it; every method
// checks it as the gRPC door does. Errors are gRPC status errors: their
// code is what codeOf maps the sentinels to, and an InvalidArgument names
// its field (FieldOf). Watch may be called with any grpc.ServerStream whose
// SendMsg hands each message to WatchResponseOf.
func (s *Server) Local() heraldpb.HeraldServer { return (*service)(s) }

// WatchResponseOf decodes a message that Watch sent on a stream (a
// pre-encoded frame or a *heraldpb.WatchResponse).
func WatchResponseOf(m any) (*heraldpb.WatchResponse, error) {
	switch m := m.(type) {
	case *heraldpb.WatchResponse:
		return m, nil
	case *frame:
		var b []byte
		for _, p := range m.parts {
			b = append(b, p...)
		}
		out := new(heraldpb.WatchResponse)
		if err := proto.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("pushsvc: decode frame: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("pushsvc: %T is not a watch message", m)
}

// FieldOf returns the request field an InvalidArgument error names (as a
// google.rpc.BadRequest detail), or "".
func FieldOf(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return ""
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// withField attaches the field of a validation error to st as a
// google.rpc.BadRequest detail, which gRPC clients in any language can read.
func withField(st *status.Status, err error) *status.Status {
	var fe *registry.FieldError
	if !errors.As(err, &fe) {
		return st
	}
	d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Msg}}})
	if derr != nil {
		return st
	}
	return d
}
