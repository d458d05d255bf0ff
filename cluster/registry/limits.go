package registry

import (
	"errors"
	"fmt"
)

// ErrLimit: a write would take this node past one of its bounds
// (ResourceExhausted). Nothing already registered is touched.
var ErrLimit = errors.New("resource limit reached")

// admitLocked refuses a registration of a key this node does not own yet
// once it owns MaxInstances. r.mu is held.
func (r *Registry) admitLocked(key Key) error {
	set := r.owners[r.cfg.Node]
	if _, ok := set.inst[key]; ok || len(set.inst) < r.cfg.MaxInstances {
		return nil
	}
	return fmt.Errorf("registry: %w: node %q owns %d instances, the most it takes (-max-instances); deregister some or register through another node", ErrLimit, r.cfg.Node, len(set.inst))
}

// approxSize estimates the memory an instance holds, for byte bounds: its
// strings plus a fixed overhead for the struct and the map buckets.
func (in *Instance) approxSize() int {
	if in == nil {
		return 64
	}
	n := 256 + len(in.Service) + len(in.ID)
	for _, t := range in.Tags {
		n += 16 + len(t)
	}
	for k, v := range in.Meta {
		n += 48 + len(k) + len(v)
	}
	return n
}
