package registry

import (
	"net/netip"
	"slices"
	"sync"
)

// Node is a cluster member as the readers need it: a name that DNS serves
// under <node>.node.<domain>, and its address.
type Node struct {
	Name string
	Addr netip.Addr
}

// serviceShards splits the services of a snapshot so that a commit copies
// only the shards it touches: with thousands of services, a copy-on-write of
// one flat map per registration would make a deploy storm quadratic.
const serviceShards = 64

type serviceShard = map[string]*Service

func shardOf(name string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return int(h % serviceShards)
}

// Snapshot is an immutable view of the whole registry. Readers load one with
// Registry.Snapshot and never lock: writers publish a new one atomically.
type Snapshot struct {
	rev       uint64
	origin    string
	shards    [serviceShards]serviceShard
	owned     uint64 // bit i: shards[i] was cloned for this snapshot (writer only)
	services  int
	instances int
	nodes     map[string]Node
	next      chan struct{}

	namesOnce sync.Once
	names     []string // sorted service names, built on first use
}

// Revision is the node-local revision of this view. It rises by one per
// event. It is only comparable between snapshots of the same Origin.
func (s *Snapshot) Revision() uint64 { return s.rev }

// Origin names the view the revision belongs to: the node name and its epoch.
// A client resuming with a revision of another origin must get a snapshot.
func (s *Snapshot) Origin() string { return s.origin }

// Service returns the named service (lower case), or nil if it has no
// registered instance.
func (s *Snapshot) Service(name string) *Service { return s.shards[shardOf(name)][name] }

// ServiceNames returns the names of all services, sorted. The slice is shared:
// do not modify it.
func (s *Snapshot) ServiceNames() []string {
	s.namesOnce.Do(func() {
		names := make([]string, 0, s.services)
		for _, sh := range s.shards {
			for n := range sh {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		s.names = names
	})
	return s.names
}

// Len returns the number of services and instances.
func (s *Snapshot) Len() (services, instances int) { return s.services, s.instances }

// Node returns the named cluster node (lower case).
func (s *Snapshot) Node(name string) (Node, bool) {
	n, ok := s.nodes[name]
	return n, ok
}

// Changed returns a channel that is closed when a newer snapshot replaces
// this one. Waiting on it never blocks the writer.
func (s *Snapshot) Changed() <-chan struct{} { return s.next }

// successor returns a copy that shares every shard with s until the writer
// changes it through setService.
func (s *Snapshot) successor() *Snapshot {
	return &Snapshot{
		rev:       s.rev,
		origin:    s.origin,
		shards:    s.shards,
		services:  s.services,
		instances: s.instances,
		nodes:     s.nodes,
		next:      make(chan struct{}),
	}
}

// setService replaces (svc != nil) or removes (svc == nil) a service in a
// snapshot that is not published yet, cloning its shard on first write.
func (s *Snapshot) setService(name string, svc *Service) {
	i := shardOf(name)
	if s.owned&(1<<i) == 0 {
		sh := make(serviceShard, len(s.shards[i])+1)
		for k, v := range s.shards[i] {
			sh[k] = v
		}
		s.shards[i] = sh
		s.owned |= 1 << i
	}
	if old := s.shards[i][name]; old != nil {
		s.services--
		s.instances -= old.Len()
		delete(s.shards[i], name)
	}
	if svc != nil {
		s.shards[i][name] = svc
		s.services++
		s.instances += svc.Len()
	}
}

// RangeNodes calls f for each cluster node, in no order, until f returns
// false.
func (s *Snapshot) RangeNodes(f func(Node) bool) {
	for _, n := range s.nodes {
		if !f(n) {
			return
		}
	}
}
