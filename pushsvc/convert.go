package pushsvc

import (
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// This file holds every conversion between heraldpb and registry types.
// Input conversions return errors that wrap registry.ErrInvalid and name the
// field, so that toStatus maps them to InvalidArgument.

func invalidField(field, format string, args ...any) error {
	return &registry.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// instanceFromProto converts a registration. The check kinds allowed depend
// on the RPC: Register takes none and TTL, Session takes none and session.
func instanceFromProto(p *heraldpb.Instance) (*registry.Instance, error) {
	if p == nil {
		return nil, invalidField("instance", "is required")
	}
	in := &registry.Instance{
		Service: p.GetService(),
		ID:      p.GetId(),
		Tags:    p.GetTags(),
		Meta:    p.GetMeta(),
		Weight:  registry.DefaultWeight,
	}
	if p.GetAddress() == "" {
		return nil, invalidField("address", "is required: an IPv4 or IPv6 address")
	}
	addr, err := netip.ParseAddr(p.GetAddress())
	if err != nil {
		return nil, invalidField("address", "%q is not an IPv4 or IPv6 address", p.GetAddress())
	}
	in.Address = addr
	if p.GetPort() == 0 || p.GetPort() > 65535 {
		return nil, invalidField("port", "%d is out of range 1 to 65535", p.GetPort())
	}
	in.Port = uint16(p.GetPort())
	if p.Weight != nil {
		if p.GetWeight() > registry.MaxWeight {
			return nil, invalidField("weight", "%d is out of range 0 to %d", p.GetWeight(), registry.MaxWeight)
		}
		in.Weight = p.GetWeight()
	}
	if in.Status, err = statusFromProto(p.GetStatus(), true); err != nil {
		return nil, err
	}
	if c := p.GetCheck(); c != nil {
		switch c.GetKind() {
		case heraldpb.Check_KIND_NONE:
		case heraldpb.Check_KIND_TTL:
			if c.GetTtl() == nil {
				return nil, invalidField("check.ttl", "is required for a TTL check")
			}
			if err := c.GetTtl().CheckValid(); err != nil {
				return nil, invalidField("check.ttl", "%v", err)
			}
			in.Check = registry.Check{Kind: registry.CheckTTL, TTL: c.GetTtl().AsDuration()}
		case heraldpb.Check_KIND_SESSION:
			in.Check = registry.Check{Kind: registry.CheckSession}
		case heraldpb.Check_KIND_TCP, heraldpb.Check_KIND_HTTP, heraldpb.Check_KIND_GRPC:
			if in.Check, err = activeCheckFromProto(c); err != nil {
				return nil, err
			}
		default:
			return nil, invalidField("check.kind", "unknown kind %d", c.GetKind())
		}
	}
	return in, nil
}

// statusFromProto converts a status. Unspecified means passing where
// allowUnspecified is set, and is rejected otherwise.
func statusFromProto(s heraldpb.Status, allowUnspecified bool) (registry.Status, error) {
	switch s {
	case heraldpb.Status_STATUS_UNSPECIFIED:
		if allowUnspecified {
			return registry.StatusPassing, nil
		}
		return 0, invalidField("status", "is required: passing, warning, critical or draining")
	case heraldpb.Status_STATUS_PASSING:
		return registry.StatusPassing, nil
	case heraldpb.Status_STATUS_WARNING:
		return registry.StatusWarning, nil
	case heraldpb.Status_STATUS_CRITICAL:
		return registry.StatusCritical, nil
	case heraldpb.Status_STATUS_DRAINING:
		return registry.StatusDraining, nil
	}
	return 0, invalidField("status", "unknown value %d: must be passing, warning, critical or draining", s)
}

func statusToProto(s registry.Status) heraldpb.Status {
	switch s {
	case registry.StatusPassing:
		return heraldpb.Status_STATUS_PASSING
	case registry.StatusWarning:
		return heraldpb.Status_STATUS_WARNING
	case registry.StatusCritical:
		return heraldpb.Status_STATUS_CRITICAL
	case registry.StatusDraining:
		return heraldpb.Status_STATUS_DRAINING
	}
	return heraldpb.Status_STATUS_UNSPECIFIED
}

// keyFromProto converts an instance key; both parts are required.
func keyFromProto(k *heraldpb.InstanceKey) (registry.Key, error) {
	if k == nil {
		return registry.Key{}, invalidField("key", "is required: service and id")
	}
	if k.GetService() == "" {
		return registry.Key{}, invalidField("key.service", "must not be empty")
	}
	if k.GetId() == "" {
		return registry.Key{}, invalidField("key.id", "must not be empty")
	}
	return registry.Key{Service: k.GetService(), ID: k.GetId()}, nil
}

// instanceToProto converts a stored instance for output. The session id is
// internal to the owner node and is not exposed.
func instanceToProto(in *registry.Instance) *heraldpb.Instance {
	w := in.Weight
	p := &heraldpb.Instance{
		Service: in.Service,
		Id:      in.ID,
		Address: in.Address.String(),
		Port:    uint32(in.Port),
		Tags:    in.Tags,
		Meta:    in.Meta,
		Weight:  &w,
		Status:  statusToProto(in.Status),
		Node:    in.Owner,
		Stamp:   uint64(in.Stamp),
	}
	p.CheckOutput = in.CheckOutput
	switch in.Check.Kind {
	case registry.CheckTCP, registry.CheckHTTP, registry.CheckGRPC:
		p.Check = activeCheckToProto(in.Check)
	case registry.CheckTTL:
		p.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(in.Check.TTL)}
	case registry.CheckSession:
		p.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_SESSION}
	}
	if !in.Updated.IsZero() {
		p.Updated = timestamppb.New(in.Updated)
	}
	return p
}

func opToProto(op registry.Op) heraldpb.Event_Op {
	if op == registry.OpRemove {
		return heraldpb.Event_OP_REMOVE
	}
	return heraldpb.Event_OP_UPSERT
}
