package registry

import (
	"net/netip"
	"slices"
	"strings"
)

// Node is a cluster member as the readers need it: a name that DNS serves
// under <node>.node.<domain>, and its address.
type Node struct {
	Name string
	Addr netip.Addr
}

// Service is the immutable merged state of one service at some revision. A
// new *Service replaces it whenever any of its instances changes, so its
// pointer identity is a version that readers can key caches on.
type Service struct {
	Name string
	// Rev is the registry revision at which the service last changed.
	Rev uint64
	// Instances holds every instance, in any status, sorted by ID.
	Instances []*Instance
}

// Instance returns the instance with id, or nil.
func (s *Service) Instance(id string) *Instance {
	i, ok := slices.BinarySearchFunc(s.Instances, id, func(in *Instance, id string) int { return strings.Compare(in.ID, id) })
	if !ok {
		return nil
	}
	return s.Instances[i]
}

// Snapshot is an immutable view of the whole registry. Readers load one with
// Registry.Snapshot and never lock: writers publish a new one atomically.
type Snapshot struct {
	rev      uint64
	origin   string
	services map[string]*Service
	names    []string // sorted service names
	nodes    map[string]Node
	next     chan struct{}
}

// Revision is the node-local revision of this view. It rises by one per
// event. It is only comparable between snapshots of the same Origin.
func (s *Snapshot) Revision() uint64 { return s.rev }

// Origin names the view the revision belongs to: the node name and its epoch.
// A client resuming with a revision of another origin must get a snapshot.
func (s *Snapshot) Origin() string { return s.origin }

// Service returns the named service (lower case), or nil if it has no
// registered instance.
func (s *Snapshot) Service(name string) *Service { return s.services[name] }

// ServiceNames returns the names of all services, sorted. The slice is shared:
// do not modify it.
func (s *Snapshot) ServiceNames() []string { return s.names }

// Len returns the number of services and instances.
func (s *Snapshot) Len() (services, instances int) {
	for _, svc := range s.services {
		instances += len(svc.Instances)
	}
	return len(s.services), instances
}

// Node returns the named cluster node (lower case).
func (s *Snapshot) Node(name string) (Node, bool) {
	n, ok := s.nodes[name]
	return n, ok
}

// Changed returns a channel that is closed when a newer snapshot replaces
// this one. Waiting on it never blocks the writer.
func (s *Snapshot) Changed() <-chan struct{} { return s.next }

// successor returns a shallow copy that shares all unchanged services.
func (s *Snapshot) successor() *Snapshot {
	n := &Snapshot{
		rev:      s.rev,
		origin:   s.origin,
		services: make(map[string]*Service, len(s.services)+1),
		names:    s.names,
		nodes:    s.nodes,
		next:     make(chan struct{}),
	}
	for k, v := range s.services {
		n.services[k] = v
	}
	return n
}
