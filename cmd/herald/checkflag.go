package main

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/cluster/checks"
	"github.com/herald-sd/herald/cluster/registry"
	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
)

// activeCheck parses -check tcp=|http=|grpc=... (cluster/checks.ParseSpec)
// into the API's form; ok is false for the other forms.
func activeCheck(spec string) (c *pb.Check, ok bool, err error) {
	rc, ok, err := checks.ParseSpec(spec)
	if !ok || err != nil {
		return nil, ok, err
	}
	kinds := map[registry.CheckKind]pb.Check_Kind{registry.CheckTCP: pb.Check_KIND_TCP, registry.CheckHTTP: pb.Check_KIND_HTTP, registry.CheckGRPC: pb.Check_KIND_GRPC}
	c = &pb.Check{Kind: kinds[rc.Kind], Target: rc.Target, SuccessBeforePassing: rc.SuccessBeforePassing, FailuresBeforeCritical: rc.FailuresBeforeCritical}
	dur := func(d time.Duration) *durationpb.Duration {
		if d == 0 {
			return nil // the agent's default
		}
		return durationpb.New(d)
	}
	c.Interval, c.Timeout, c.DeregisterAfter = dur(rc.Interval), dur(rc.Timeout), dur(rc.DeregisterAfter)
	return c, true, nil
}
