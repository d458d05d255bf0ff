package pushsvc

import (
	"context"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// MaxJoinAddresses bounds the addresses of one Join request.
const MaxJoinAddresses = 64

// Join asks the agent to join the cluster of the given Serf addresses,
// through Config.Join.
func (s *service) Join(ctx context.Context, req *heraldpb.JoinRequest) (*heraldpb.JoinResponse, error) {
	if err := (*Server)(s).allowOperator(ctx, "join"); err != nil {
		return nil, err
	}
	if s.cfg.Join == nil {
		return nil, status.Error(codes.Unimplemented, "pushsvc: this server has no cluster to join")
	}
	addrs := req.GetAddresses()
	if err := validJoinAddrs(addrs); err != nil {
		return nil, toStatus(err)
	}
	n, err := s.cfg.Join(ctx, addrs)
	if err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.JoinResponse{Joined: uint32(n)}, nil
}

func validJoinAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return invalidField("addresses", "at least one is required: the Serf address (host:port) of a cluster member")
	}
	if len(addrs) > MaxJoinAddresses {
		return invalidField("addresses", "%d given; at most %d per join (one reachable member is enough)", len(addrs), MaxJoinAddresses)
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || p == 0 {
			return invalidField("addresses", "%q is not host:port; give a member's Serf address (its -bind or -advertise)", a)
		}
	}
	return nil
}

// ForceLeave moves a failed member to left, through Config.ForceLeave.
func (s *service) ForceLeave(ctx context.Context, req *heraldpb.ForceLeaveRequest) (*heraldpb.ForceLeaveResponse, error) {
	if err := (*Server)(s).allowOperator(ctx, "force-leave"); err != nil {
		return nil, err
	}
	if s.cfg.ForceLeave == nil {
		return nil, status.Error(codes.Unimplemented, "pushsvc: this server has no cluster members to remove")
	}
	if req.GetNode() == "" {
		return nil, toStatus(invalidField("node", "is required: the member's name, as `herald members` lists it"))
	}
	if err := s.cfg.ForceLeave(ctx, req.GetNode(), req.GetPrune()); err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.ForceLeaveResponse{}, nil
}
