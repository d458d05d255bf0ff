package pushsvc

import (
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// The API form of active checks (tcp, http, grpc); the registry validates
// them and fills their defaults.

var activeKinds = map[heraldpb.Check_Kind]registry.CheckKind{
	heraldpb.Check_KIND_TCP:  registry.CheckTCP,
	heraldpb.Check_KIND_HTTP: registry.CheckHTTP,
	heraldpb.Check_KIND_GRPC: registry.CheckGRPC,
}

func activeCheckFromProto(c *heraldpb.Check) (registry.Check, error) {
	out := registry.Check{Kind: activeKinds[c.GetKind()], Target: c.GetTarget(),
		SuccessBeforePassing: c.GetSuccessBeforePassing(), FailuresBeforeCritical: c.GetFailuresBeforeCritical()}
	for _, d := range []struct {
		field string
		in    *durationpb.Duration
		out   *int64
	}{
		{"check.interval", c.GetInterval(), (*int64)(&out.Interval)},
		{"check.timeout", c.GetTimeout(), (*int64)(&out.Timeout)},
		{"check.deregister_after", c.GetDeregisterAfter(), (*int64)(&out.DeregisterAfter)},
	} {
		if d.in == nil {
			continue
		}
		if err := d.in.CheckValid(); err != nil {
			return registry.Check{}, invalidField(d.field, "%v", err)
		}
		*d.out = int64(d.in.AsDuration())
	}
	return out, nil
}

func activeCheckToProto(c registry.Check) *heraldpb.Check {
	p := &heraldpb.Check{Target: c.Target, Interval: durationpb.New(c.Interval), Timeout: durationpb.New(c.Timeout),
		SuccessBeforePassing: c.SuccessBeforePassing, FailuresBeforeCritical: c.FailuresBeforeCritical}
	for k, v := range activeKinds {
		if v == c.Kind {
			p.Kind = k
		}
	}
	if c.DeregisterAfter > 0 {
		p.DeregisterAfter = durationpb.New(c.DeregisterAfter)
	}
	return p
}
