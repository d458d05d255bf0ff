package pushsvc

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Register adds or updates a plain or TTL registration owned by this node.
func (s *service) Register(ctx context.Context, req *heraldpb.RegisterRequest) (*heraldpb.RegisterResponse, error) {
	in, err := instanceFromProto(req.GetInstance())
	if err == nil && in.Check.Kind == registry.CheckSession {
		err = invalidField("check.kind", "session registrations must be made on the Session stream")
	}
	if err == nil {
		err = (*Server)(s).allow(ctx, acl.Write, in.Service)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	stored, err := s.reg.Register(ctx, in)
	if err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.RegisterResponse{Instance: instanceToProto(stored)}, nil
}

// Deregister removes an instance, through any node: it leaves a tombstone
// whose stamp beats every older copy of the key.
func (s *service) Deregister(ctx context.Context, req *heraldpb.DeregisterRequest) (*heraldpb.DeregisterResponse, error) {
	key, err := keyFromProto(req.GetKey())
	var stamp registry.Stamp
	if err == nil {
		err = (*Server)(s).allow(ctx, acl.Write, key.Service)
	}
	if err == nil {
		stamp, err = s.reg.Deregister(ctx, key)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.DeregisterResponse{Stamp: uint64(stamp)}, nil
}

// SetStatus drains or undrains one instance, a service or the whole node.
func (s *service) SetStatus(ctx context.Context, req *heraldpb.SetStatusRequest) (*heraldpb.SetStatusResponse, error) {
	n, stamp, err := s.setStatus(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.SetStatusResponse{Matched: uint32(n), Stamp: uint64(stamp)}, nil
}

func (s *service) setStatus(ctx context.Context, req *heraldpb.SetStatusRequest) (int, registry.Stamp, error) {
	st, err := statusFromProto(req.GetStatus(), false)
	if err != nil {
		return 0, 0, err
	}
	if req.GetId() != "" && req.GetService() == "" {
		return 0, 0, invalidField("service", "is required when id is set")
	}
	if req.GetService() == "" {
		err = (*Server)(s).allowOperator(ctx, "draining or undraining every instance of the node")
	} else {
		err = (*Server)(s).allow(ctx, acl.Write, req.GetService())
	}
	if err != nil {
		return 0, 0, err
	}
	return s.reg.SetStatus(ctx, req.GetService(), req.GetId(), st)
}

// Heartbeat renews a TTL registration.
func (s *service) Heartbeat(ctx context.Context, req *heraldpb.HeartbeatRequest) (*heraldpb.HeartbeatResponse, error) {
	key, err := keyFromProto(req.GetKey())
	if err == nil {
		err = (*Server)(s).allow(ctx, acl.Write, key.Service)
	}
	if err == nil {
		err = s.reg.Heartbeat(ctx, key)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &heraldpb.HeartbeatResponse{}, nil
}

// ListServices summarizes the services in this node's view, in name order,
// a page at a time when asked (page_size, page_token); one response never
// exceeds about 1 MiB.
func (s *service) ListServices(ctx context.Context, req *heraldpb.ListServicesRequest) (*heraldpb.ListServicesResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	canRead, err := (*Server)(s).readable(ctx)
	if err != nil {
		return nil, err
	}
	snap := s.reg.Snapshot()
	names := snap.ServiceNames()
	if token := req.GetPageToken(); token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, toStatus(invalidField("page_token", "%q is not a token this server gave", token))
		}
		i, found := slices.BinarySearch(names, string(after))
		if found {
			i++
		}
		names = names[i:]
	}
	size := int(req.GetPageSize())
	out := &heraldpb.ListServicesResponse{Revision: snap.Revision()}
	bytes := 0
	for _, name := range names {
		if size > 0 && len(out.Services) == size {
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Services[len(out.Services)-1].GetName()))
			break
		}
		if canRead != nil && !canRead(name) {
			continue
		}
		svc := snap.Service(name)
		if svc == nil {
			continue
		}
		sum := summarize(svc)
		n := proto.Size(sum) + 8
		if bytes+n > maxMessageBytes-64 && len(out.Services) > 0 {
			if size == 0 {
				return nil, toStatus(fmt.Errorf("%w: the services of this node take more than the %d bytes of one response; ask for pages (page_size and page_token; herald services pages by itself)", registry.ErrLimit, maxMessageBytes))
			}
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Services[len(out.Services)-1].GetName()))
			break
		}
		out.Services = append(out.Services, sum)
		bytes += n
	}
	return out, nil
}

// summarize counts a service's instances and collects its tags.
func summarize(svc *registry.Service) *heraldpb.ServiceSummary {
	sum := &heraldpb.ServiceSummary{Name: svc.Name, Instances: uint32(svc.Len())}
	for in := range svc.All() {
		if in.Serving() {
			sum.Serving++
		}
		sum.Tags = append(sum.Tags, in.Tags...)
	}
	slices.Sort(sum.Tags)
	sum.Tags = slices.Compact(sum.Tags)
	return sum
}

// ListInstances lists a service's instances in every status, optionally
// only those with a tag. An unknown service has no instances.
func (s *service) ListInstances(ctx context.Context, req *heraldpb.ListInstancesRequest) (*heraldpb.ListInstancesResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	if !registry.ValidName(req.GetService()) {
		return nil, toStatus(invalidField("service", "%q must be a DNS label: letters, digits and inner hyphens", req.GetService()))
	}
	tag := strings.ToLower(req.GetTag())
	if tag != "" && !registry.ValidName(tag) {
		return nil, toStatus(invalidField("tag", "%q must be a DNS label: letters, digits and inner hyphens", req.GetTag()))
	}
	if err := (*Server)(s).allow(ctx, acl.Read, req.GetService()); err != nil {
		return nil, err
	}
	snap := s.reg.Snapshot()
	out := &heraldpb.ListInstancesResponse{Revision: snap.Revision()}
	var err error
	out.Instances, out.NextPageToken, err = pageInstances(snap.Service(strings.ToLower(req.GetService())), tag, req.GetPageToken(), int(req.GetPageSize()))
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// Members lists the cluster members, from Config.Members.
func (s *service) Members(ctx context.Context, _ *heraldpb.MembersRequest) (*heraldpb.MembersResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, toStatus(err)
	}
	if _, err := (*Server)(s).principal(ctx); err != nil { // any principal may list the members
		return nil, err
	}
	if s.cfg.Members != nil {
		return &heraldpb.MembersResponse{Members: s.cfg.Members()}, nil
	}
	m := &heraldpb.Member{Name: s.reg.NodeName(), Status: "alive"}
	if n, ok := s.reg.Snapshot().Node(s.reg.NodeName()); ok && n.Addr.IsValid() {
		m.Address = n.Addr.String()
	}
	return &heraldpb.MembersResponse{Members: []*heraldpb.Member{m}}, nil
}
