package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Session serves a registration session. Every instance registered on the
// stream is removed the moment the stream ends: the client closed it, its
// process died (the kernel resets the connection), keepalive found the
// connection dead, or the server closed. Each request gets one response
// with its request_id.
func (s *service) Session(stream heraldpb.Herald_SessionServer) error {
	ctx := stream.Context()
	sid := fmt.Sprintf("%s@%d/%d", s.reg.NodeName(), s.reg.Epoch(), s.sessionSeq.Add(1))
	s.sessions.Add(1)
	defer func() {
		s.sessions.Add(-1)
		if n := s.reg.RemoveSession(sid); n > 0 {
			s.log.Debug("session ended; its instances were removed", "session", sid, "removed", n)
		}
	}()

	lost := s.reg.SessionLost(sid)
	reqs, recvErr, stop := recvLoop(stream.Recv)
	defer stop()
	for {
		select {
		case req := <-reqs:
			if err := stream.Send(s.sessionOp(ctx, sid, req)); err != nil {
				return err
			}
		case <-lost:
			// Newer writes of these keys were made through other nodes.
			for _, k := range s.reg.TakeLost(sid) {
				msg := fmt.Sprintf("instance %s was replaced by a newer write through another node; this session no longer holds it", k)
				resp := &heraldpb.SessionResponse{Code: int32(codes.Aborted), Message: msg, Lost: &heraldpb.InstanceKey{Service: k.Service, Id: k.ID}}
				if err := stream.Send(resp); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-s.closing:
			return toStatus(errServerClosed)
		}
	}
}

// sessionOp runs one session request and builds its response.
func (s *service) sessionOp(ctx context.Context, sid string, req *heraldpb.SessionRequest) *heraldpb.SessionResponse {
	resp := &heraldpb.SessionResponse{RequestId: req.GetRequestId()}
	var err error
	switch op := req.GetOp().(type) {
	case *heraldpb.SessionRequest_Register:
		var in *registry.Instance
		in, err = instanceFromProto(op.Register)
		if err == nil && in.Check.Kind == registry.CheckTTL {
			err = invalidField("check.kind", "a session registration lives as long as its stream; use the Register RPC for TTL checks")
		}
		if err == nil {
			err = (*Server)(s).allow(ctx, acl.Write, in.Service)
		}
		if err == nil {
			in.Check = registry.Check{Kind: registry.CheckSession, Session: sid}
			in, err = s.reg.Register(ctx, in)
		}
		if err == nil {
			resp.Instance = instanceToProto(in)
		}
	case *heraldpb.SessionRequest_Deregister:
		var key registry.Key
		if key, err = keyFromProto(op.Deregister); err == nil {
			err = (*Server)(s).allow(ctx, acl.Write, key.Service)
		}
		if err == nil {
			_, err = s.reg.Deregister(ctx, key)
		}
	case *heraldpb.SessionRequest_SetStatus:
		_, _, err = s.setStatus(ctx, op.SetStatus)
	case *heraldpb.SessionRequest_Ping:
	default:
		err = invalidField("op", "is required: register, deregister, set_status or ping")
	}
	if err != nil {
		(*Server)(s).logInternal("Session", err)
		st := statusOf(err)
		resp.Code, resp.Message = int32(st.Code()), st.Message()
	}
	return resp
}
