package client

import (
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Status is an instance's health as the API carries it.
type Status = heraldpb.Status

// Statuses. Only passing and warning instances receive new traffic.
const (
	StatusPassing  = heraldpb.Status_STATUS_PASSING
	StatusWarning  = heraldpb.Status_STATUS_WARNING
	StatusCritical = heraldpb.Status_STATUS_CRITICAL
	StatusDraining = heraldpb.Status_STATUS_DRAINING
)

// Instance is one endpoint of a service. Instances delivered by a Watcher are
// shared between updates: treat them, and their Tags and Meta, as read-only.
type Instance struct {
	Service string
	ID      string
	Address netip.Addr
	Port    uint16
	Tags    []string
	Meta    map[string]string
	// Weight is the share of new traffic; 0 means none. On Register, 0 means
	// "the agent's default" (1).
	Weight uint32
	// Status on Register: zero means passing.
	Status Status
	// Node is the agent that owns the registration (output only).
	Node string
	// Updated is the owner's clock at the last change (output only).
	Updated time.Time
	// CheckOutput is what the instance's active check (tcp, http or grpc,
	// probed by its owner node) reported at its last status change (output
	// only).
	CheckOutput string
}

// Serving reports whether the instance should get new traffic: status
// passing or warning and a non-zero weight.
func (in *Instance) Serving() bool {
	return (in.Status == StatusPassing || in.Status == StatusWarning) && in.Weight > 0
}

// AddrPort returns the instance's address and port.
func (in *Instance) AddrPort() netip.AddrPort { return netip.AddrPortFrom(in.Address, in.Port) }

// toProto converts for a registration with the given check.
func (in *Instance) toProto(kind heraldpb.Check_Kind, ttl time.Duration) *heraldpb.Instance {
	p := &heraldpb.Instance{
		Service: in.Service,
		Id:      in.ID,
		Port:    uint32(in.Port),
		Tags:    slices.Clone(in.Tags),
		Meta:    in.Meta,
		Status:  in.Status,
		Check:   &heraldpb.Check{Kind: kind},
	}
	if in.Address.IsValid() {
		p.Address = in.Address.String()
	}
	if in.Weight > 0 {
		w := in.Weight
		p.Weight = &w
	}
	if ttl > 0 {
		p.Check.Ttl = durationpb.New(ttl)
	}
	return p
}

// fromProto converts an instance received from an agent. A missing weight is
// the default 1 and an unspecified status is passing, as on the agent.
func fromProto(p *heraldpb.Instance) Instance {
	in := Instance{
		Service: p.GetService(),
		ID:      p.GetId(),
		Port:    uint16(p.GetPort()),
		Tags:    p.GetTags(),
		Meta:    p.GetMeta(),
		Weight:  1,
		Status:  p.GetStatus(),
		Node:    p.GetNode(),

		CheckOutput: p.GetCheckOutput(),
	}
	in.Address, _ = netip.ParseAddr(p.GetAddress())
	if p.Weight != nil {
		in.Weight = p.GetWeight()
	}
	if in.Status == heraldpb.Status_STATUS_UNSPECIFIED {
		in.Status = StatusPassing
	}
	if p.GetUpdated() != nil {
		in.Updated = p.GetUpdated().AsTime()
	}
	return in
}
