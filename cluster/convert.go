package cluster

import (
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-sd/herald/cluster/clusterpb"
	"github.com/herald-sd/herald/cluster/registry"
)

// Message bounds. A full-state chunk or delta batch closes once it holds
// chunkSize instances or maxMsgBytes of encoded instances, whichever comes
// first, so that even instances with the largest tags and meta (about 25 KB
// each) stay far below gRPC's default 4 MB receive limit.
const (
	chunkSize   = 2000
	maxMsgBytes = 1 << 20
)

func versionToPB(v registry.Version) *clusterpb.Version {
	return &clusterpb.Version{Epoch: v.Epoch, Seq: v.Seq}
}

func versionFromPB(v *clusterpb.Version) registry.Version {
	return registry.Version{Epoch: v.GetEpoch(), Seq: v.GetSeq()}
}

func instanceToPB(in *registry.Instance) *clusterpb.Instance {
	return &clusterpb.Instance{
		Service:          in.Service,
		Id:               in.ID,
		Address:          in.Address.AsSlice(),
		Port:             uint32(in.Port),
		Tags:             in.Tags,
		Meta:             in.Meta,
		Weight:           in.Weight,
		Status:           uint32(in.Status),
		CheckKind:        uint32(in.Check.Kind),
		CheckTtlNanos:    int64(in.Check.TTL),
		Owner:            in.Owner,
		UpdatedUnixNanos: in.Updated.UnixNano(),
		Stamp:            uint64(in.Stamp),

		CheckTarget:                 in.Check.Target,
		CheckIntervalNanos:          int64(in.Check.Interval),
		CheckTimeoutNanos:           int64(in.Check.Timeout),
		CheckDeregisterAfterNanos:   int64(in.Check.DeregisterAfter),
		CheckSuccessBeforePassing:   in.Check.SuccessBeforePassing,
		CheckFailuresBeforeCritical: in.Check.FailuresBeforeCritical,
		CheckOutput:                 in.CheckOutput,
	}
}

// instanceFromPB converts a peer's instance and validates it exactly as the
// public API validates a registration (Instance.Normalize): a peer's
// instances are served to the same readers.
func instanceFromPB(p *clusterpb.Instance, owner string) (*registry.Instance, error) {
	addr, ok := netip.AddrFromSlice(p.GetAddress())
	if !ok || p.GetPort() > 65535 {
		return nil, malformed("malformed instance %q/%q from %q", p.GetService(), p.GetId(), owner)
	}
	if len(p.GetCheckOutput()) > registry.MaxCheckOutput || len(p.GetCheckTarget()) > registry.MaxCheckTarget {
		return nil, malformed("instance %q/%q from %q has a check target or output over its bound", p.GetService(), p.GetId(), owner)
	}
	if p.GetStatus() > uint32(registry.StatusDraining) {
		return nil, malformed("instance %q/%q from %q has unknown status %d", p.GetService(), p.GetId(), owner, p.GetStatus())
	}
	in := &registry.Instance{
		Service: p.GetService(),
		ID:      p.GetId(),
		Address: addr.Unmap(),
		Port:    uint16(p.GetPort()),
		Tags:    p.GetTags(),
		Meta:    p.GetMeta(),
		Weight:  p.GetWeight(),
		Status:  registry.Status(p.GetStatus()),
		Check: registry.Check{Kind: registry.CheckKind(p.GetCheckKind()), TTL: time.Duration(p.GetCheckTtlNanos()),
			Target: p.GetCheckTarget(), Interval: time.Duration(p.GetCheckIntervalNanos()), Timeout: time.Duration(p.GetCheckTimeoutNanos()),
			DeregisterAfter: time.Duration(p.GetCheckDeregisterAfterNanos()), SuccessBeforePassing: p.GetCheckSuccessBeforePassing(),
			FailuresBeforeCritical: p.GetCheckFailuresBeforeCritical()},
		CheckOutput: p.GetCheckOutput(),
		Owner:       owner,
		Updated:     time.Unix(0, p.GetUpdatedUnixNanos()),
		Stamp:       registry.Stamp(p.GetStamp()),
	}
	if len(in.Tags) == 0 {
		in.Tags = nil
	}
	if len(in.Meta) == 0 {
		in.Meta = nil
	}
	if err := in.Normalize(); err != nil {
		return nil, malformed("instance %q/%q from %q: %v", p.GetService(), p.GetId(), owner, err)
	}
	if err := checkStamp(in.Stamp, fmt.Sprintf("instance %q/%q", in.Service, in.ID), owner); err != nil {
		return nil, err
	}
	return in, nil
}

// keyFromPB validates a peer's key as the public API validates one.
func keyFromPB(service, id, owner string) (registry.Key, error) {
	k := registry.Key{Service: service, ID: id}
	if err := k.Normalize(); err != nil {
		return registry.Key{}, malformed("key %q/%q from %q: %v", service, id, owner, err)
	}
	return k, nil
}

func deltaToPB(d registry.Delta) *clusterpb.Delta {
	return &clusterpb.Delta{
		Version:       versionToPB(d.Version),
		Op:            uint32(d.Op),
		Instance:      instanceToPB(d.Instance),
		TimeUnixNanos: d.Time.UnixNano(),
		Stamp:         uint64(d.Stamp),
	}
}

func deltaFromPB(p *clusterpb.Delta, owner string) (registry.Delta, error) {
	op := registry.Op(p.GetOp())
	var in *registry.Instance
	switch op {
	case registry.OpUpsert:
		var err error
		if in, err = instanceFromPB(p.GetInstance(), owner); err != nil {
			return registry.Delta{}, err
		}
	case registry.OpRemove, registry.OpDrop:
		// Only the key matters: the owner may never have held an instance
		// of it (a deregistration that took the key over).
		k, err := keyFromPB(p.GetInstance().GetService(), p.GetInstance().GetId(), owner)
		if err != nil {
			return registry.Delta{}, err
		}
		in = &registry.Instance{Service: k.Service, ID: k.ID, Owner: owner}
	default:
		return registry.Delta{}, malformed("delta from %q has unknown op %d", owner, p.GetOp())
	}
	v := versionFromPB(p.GetVersion())
	if err := checkEpoch(v.Epoch, owner); err != nil {
		return registry.Delta{}, err
	}
	if err := checkStamp(registry.Stamp(p.GetStamp()), "delta", owner); err != nil {
		return registry.Delta{}, err
	}
	return registry.Delta{
		Owner:    owner,
		Version:  v,
		Op:       op,
		Instance: in,
		Time:     time.Unix(0, p.GetTimeUnixNanos()),
		Stamp:    registry.Stamp(p.GetStamp()),
	}, nil
}

// stateChunks splits an owner state into messages of at most chunkSize
// instances; the last one has Last set. An empty state is one empty chunk.
func stateChunks(st registry.OwnerState) []*clusterpb.OwnerStateChunk {
	newChunk := func() *clusterpb.OwnerStateChunk {
		return &clusterpb.OwnerStateChunk{Owner: st.Owner, Version: versionToPB(st.Version)}
	}
	out := []*clusterpb.OwnerStateChunk{newChunk()}
	size := 0
	for _, in := range st.Instances {
		pb := instanceToPB(in)
		n := proto.Size(pb)
		c := out[len(out)-1]
		if len(c.Instances) > 0 && (len(c.Instances) >= chunkSize || size+n > maxMsgBytes) {
			c = newChunk()
			out = append(out, c)
			size = 0
		}
		c.Instances = append(c.Instances, pb)
		size += n
	}
	for _, t := range st.Tombstones {
		pb := &clusterpb.Tombstone{Service: t.Key.Service, Id: t.Key.ID, Stamp: uint64(t.Stamp)}
		n := proto.Size(pb)
		c := out[len(out)-1]
		if len(c.Instances)+len(c.Tombstones) > 0 && (len(c.Instances)+len(c.Tombstones) >= chunkSize || size+n > maxMsgBytes) {
			c = newChunk()
			out = append(out, c)
			size = 0
		}
		c.Tombstones = append(c.Tombstones, pb)
		size += n
	}
	out[len(out)-1].Last = true
	return out
}

// stateAssembler rebuilds an owner state from its chunks.
type stateAssembler struct {
	st      registry.OwnerState
	started bool
}

// add adds a chunk; it returns the state when the last chunk arrived.
func (a *stateAssembler) add(c *clusterpb.OwnerStateChunk, owner string) (*registry.OwnerState, error) {
	v := versionFromPB(c.GetVersion())
	if c.GetOwner() != owner {
		return nil, malformed("full state of %q arrived for owner %q", c.GetOwner(), owner)
	}
	if err := checkEpoch(v.Epoch, owner); err != nil {
		return nil, err
	}
	if !a.started {
		a.st = registry.OwnerState{Owner: owner, Version: v}
		a.started = true
	} else if v != a.st.Version {
		return nil, malformed("full state of %q changed version mid-stream (%s, then %s)", owner, a.st.Version, v)
	}
	for _, p := range c.GetInstances() {
		in, err := instanceFromPB(p, owner)
		if err != nil {
			return nil, err
		}
		a.st.Instances = append(a.st.Instances, in)
	}
	for _, t := range c.GetTombstones() {
		k, err := keyFromPB(t.GetService(), t.GetId(), owner)
		if err != nil {
			return nil, err
		}
		if err := checkStamp(registry.Stamp(t.GetStamp()), fmt.Sprintf("tombstone %q/%q", k.Service, k.ID), owner); err != nil {
			return nil, err
		}
		a.st.Tombstones = append(a.st.Tombstones, registry.Tombstone{Key: k, Stamp: registry.Stamp(t.GetStamp())})
	}
	if !c.GetLast() {
		return nil, nil
	}
	st := a.st
	*a = stateAssembler{}
	return &st, nil
}
