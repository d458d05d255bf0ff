package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// CheckKind is the kind of an active check.
type CheckKind = heraldpb.Check_Kind

// Active check kinds.
const (
	CheckTCP  = heraldpb.Check_KIND_TCP  // passing when a TCP connection to Target opens
	CheckHTTP = heraldpb.Check_KIND_HTTP // GET Target: 2xx passing, 429 warning, else critical
	CheckGRPC = heraldpb.Check_KIND_GRPC // grpc.health.v1 at Target, host:port[/service]
)

// ActiveCheck is a health check that the agent owning the registration
// runs: it probes Target every Interval and sets the instance's status.
// Zero durations and counts take the agent's defaults (interval 10s,
// timeout 5s or the interval, never deregister, thresholds 1).
type ActiveCheck struct {
	Kind   CheckKind
	Target string
	// Interval between probes (1s to 24h) and Timeout of one (at most
	// Interval).
	Interval, Timeout time.Duration
	// DeregisterAfter removes the instance once it has been critical this
	// long; 0 never does.
	DeregisterAfter time.Duration
	// SuccessBeforePassing and FailuresBeforeCritical are the probes in a
	// row needed to turn passing or critical (1 to 100).
	SuccessBeforePassing, FailuresBeforeCritical uint32
}

func (ac ActiveCheck) toProto() *heraldpb.Check {
	dur := func(d time.Duration) *durationpb.Duration {
		if d == 0 {
			return nil
		}
		return durationpb.New(d)
	}
	return &heraldpb.Check{Kind: ac.Kind, Target: ac.Target, Interval: dur(ac.Interval), Timeout: dur(ac.Timeout),
		DeregisterAfter: dur(ac.DeregisterAfter), SuccessBeforePassing: ac.SuccessBeforePassing, FailuresBeforeCritical: ac.FailuresBeforeCritical}
}

// RegisterChecked registers inst, without a session, with an active check
// that the agent runs: the instance lives until it is deregistered (or
// DeregisterAfter has passed critical), whatever happens to this client.
// Of the options only WithWeight applies (inst.Weight 0 means the agent's
// default, as on Register). It returns the instance as stored.
func (c *Client) RegisterChecked(ctx context.Context, inst Instance, check ActiveCheck, opts ...RegisterOption) (Instance, error) {
	switch check.Kind {
	case CheckTCP, CheckHTTP, CheckGRPC:
	default:
		return Instance{}, fmt.Errorf("client: RegisterChecked: check kind %s is not an active check (tcp, http or grpc)", check.Kind)
	}
	r := &registration{want: inst}
	for _, o := range opts {
		o(r)
	}
	p := r.want.toProto(heraldpb.Check_KIND_NONE, 0)
	if r.weightSet {
		w := r.want.Weight
		p.Weight = &w
	}
	p.Check = check.toProto()
	var out Instance
	err := c.unary(ctx, func(ctx context.Context, api heraldpb.HeraldClient) error {
		resp, err := api.Register(ctx, &heraldpb.RegisterRequest{Instance: p})
		if err == nil {
			out = fromProto(resp.GetInstance())
		}
		return err
	})
	return out, err
}
