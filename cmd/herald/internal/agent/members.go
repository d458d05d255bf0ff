package agent

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// SerfSnapshotFile is the file in -data-dir where Serf keeps the members it
// knows, so that a restarted node rejoins them without -join.
const SerfSnapshotFile = "serf.snapshot"

func membersToProto(ms []cluster.Member) []*heraldpb.Member {
	out := make([]*heraldpb.Member, 0, len(ms))
	for _, m := range ms {
		pm := &heraldpb.Member{Name: m.Name, Address: m.Addr, Status: m.Status, Tags: m.Tags}
		if !m.Since.IsZero() {
			pm.StatusSince = timestamppb.New(m.Since)
		}
		out = append(out, pm)
	}
	return out
}

// joinHook and forceLeaveHook serve the Join and ForceLeave RPCs from the
// cluster, marking its errors with pushsvc's sentinels so that pushsvc picks
// the gRPC code; the message stays the cluster's.
func joinHook(cl *cluster.Cluster) func(context.Context, []string) (int, error) {
	return func(ctx context.Context, addrs []string) (int, error) {
		n, err := cl.Join(ctx, addrs)
		switch {
		case errors.Is(err, cluster.ErrJoinFailed), errors.Is(err, cluster.ErrNameConflict):
			err = kindError{pushsvc.ErrJoinFailed, err}
		}
		return n, err
	}
}

func forceLeaveHook(cl *cluster.Cluster) func(context.Context, string, bool) error {
	return func(ctx context.Context, node string, prune bool) error {
		err := cl.ForceLeave(ctx, node, prune)
		switch {
		case errors.Is(err, cluster.ErrNotMember):
			err = kindError{pushsvc.ErrUnknownMember, err}
		case errors.Is(err, cluster.ErrNotFailed):
			err = kindError{pushsvc.ErrMemberNotFailed, err}
		}
		return err
	}
}

// kindError is err, also matching kind with errors.Is.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }
