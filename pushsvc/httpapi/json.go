package httpapi

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// This file holds the API's JSON shapes and their conversions to and from
// heraldpb. It converts only; the gRPC handlers validate.

// Instance is an instance as the API shows it.
type Instance struct {
	Service string            `json:"service"`
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    uint32            `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Weight  uint32            `json:"weight"`
	Status  string            `json:"status"`
	Node    string            `json:"node"`
	Check   *Check            `json:"check,omitempty"`
	Updated *time.Time        `json:"updated,omitempty"`
	// Stamp orders the writes of one key (the highest wins everywhere). It
	// is a string: JavaScript's numbers cannot hold a uint64.
	Stamp uint64 `json:"stamp,string"`
}

// Check is what keeps an instance alive: "none" (the owner node's lifetime),
// "ttl" (heartbeats within TTL) or "session" (a gRPC Session stream).
type Check struct {
	Kind string `json:"kind"`
	TTL  string `json:"ttl,omitempty"`
}

// RegisterBody is the body of PUT /v1/services/{name}/{id}. Every field but
// address and port is optional: weight defaults to 1, status to passing,
// check to none.
type RegisterBody struct {
	Address string            `json:"address"`
	Port    uint32            `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Weight  *uint32           `json:"weight"`
	Status  string            `json:"status"`
	Check   *CheckBody        `json:"check"`
}

// CheckBody is a registration's check: {"ttl": "30s"} for a TTL check
// renewed by POST .../heartbeat; kind may say "ttl" or "none" explicitly.
type CheckBody struct {
	Kind string `json:"kind"`
	TTL  string `json:"ttl"`
}

// toProto converts a registration. Only the JSON-specific spellings (status
// and check kind names, the TTL's duration string) are checked here.
func (b *RegisterBody) toProto(service, id string) (*heraldpb.Instance, error) {
	p := &heraldpb.Instance{Service: service, Id: id, Address: b.Address, Port: b.Port, Tags: b.Tags, Meta: b.Meta, Weight: b.Weight}
	if b.Status != "" {
		st, err := statusFromName(b.Status)
		if err != nil {
			return nil, err
		}
		p.Status = st
	}
	if c := b.Check; c != nil {
		switch strings.ToLower(c.Kind) {
		case "", "ttl":
			if c.Kind == "" && c.TTL == "" {
				break
			}
			if c.TTL == "" {
				return nil, badRequest("check.ttl", "httpapi: check.ttl is required for a TTL check, as a duration such as \"30s\"")
			}
			d, err := time.ParseDuration(c.TTL)
			if err != nil {
				return nil, badRequest("check.ttl", "httpapi: check.ttl %q is not a duration such as \"30s\"", c.TTL)
			}
			p.Check = &heraldpb.Check{Kind: heraldpb.Check_KIND_TTL, Ttl: durationpb.New(d)}
		case "none":
			if c.TTL != "" {
				return nil, badRequest("check.ttl", "httpapi: check.ttl is only for a check of kind ttl")
			}
		default:
			return nil, badRequest("check.kind", "httpapi: check.kind %q must be ttl or none (sessions are gRPC streams)", c.Kind)
		}
	}
	return p, nil
}

// statusFromName parses a status name with the registry's parser.
func statusFromName(name string) (heraldpb.Status, error) {
	st, err := registry.ParseStatus(name)
	if err != nil {
		return 0, badRequest("status", "httpapi: status %q must be passing, warning, critical or draining", name)
	}
	return heraldpb.Status(heraldpb.Status_value["STATUS_"+strings.ToUpper(st.String())]), nil
}

// statusName is the lower-case name of a status ("passing").
func statusName(s heraldpb.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// serving reports whether an instance gets new traffic, by the registry's
// rule (registry.Instance.Serving).
func serving(p *heraldpb.Instance) bool {
	st, err := registry.ParseStatus(statusName(p.GetStatus()))
	return err == nil && st.Serving() && p.GetWeight() > 0
}

func instanceFromProto(p *heraldpb.Instance) Instance {
	in := Instance{
		Service: p.GetService(), ID: p.GetId(), Address: p.GetAddress(), Port: p.GetPort(),
		Tags: p.GetTags(), Meta: p.GetMeta(), Weight: p.GetWeight(), Status: statusName(p.GetStatus()),
		Node: p.GetNode(), Stamp: p.GetStamp(),
	}
	if in.Tags == nil {
		in.Tags = []string{}
	}
	if in.Meta == nil {
		in.Meta = map[string]string{}
	}
	switch p.GetCheck().GetKind() {
	case heraldpb.Check_KIND_TTL:
		in.Check = &Check{Kind: "ttl", TTL: p.GetCheck().GetTtl().AsDuration().String()}
	case heraldpb.Check_KIND_SESSION:
		in.Check = &Check{Kind: "session"}
	default:
		in.Check = &Check{Kind: "none"}
	}
	if p.GetUpdated() != nil {
		t := p.GetUpdated().AsTime()
		in.Updated = &t
	}
	return in
}

// Service summarizes a service (GET /v1/services).
type Service struct {
	Name      string   `json:"name"`
	Instances uint32   `json:"instances"`
	Serving   uint32   `json:"serving"`
	Tags      []string `json:"tags"`
}

// Member is a cluster member (GET /v1/members).
type Member struct {
	Name        string            `json:"name"`
	Address     string            `json:"address"`
	Status      string            `json:"status"`
	Tags        map[string]string `json:"tags"`
	StatusSince *time.Time        `json:"status_since,omitempty"`
}

func memberFromProto(p *heraldpb.Member) Member {
	m := Member{Name: p.GetName(), Address: p.GetAddress(), Status: p.GetStatus(), Tags: p.GetTags()}
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	if p.GetStatusSince() != nil {
		t := p.GetStatusSince().AsTime()
		m.StatusSince = &t
	}
	return m
}
