package registry

// Durable replication: with a Store, this node's own changes reach its peers
// only once they are on its disk. Otherwise a write that failed to persist
// (a full disk) or died with the process (kill -9 during the fsync) could
// make peers drop an older, acknowledged copy of the key, and then vanish
// itself when this node restarts without it.
//
// Local deltas wait in r.pending, in order, with the commit that persists
// them; advanceDurable moves every leading delta whose commit succeeded (or
// that needs none: TTL and session instances) into the delta log that peers
// read, and into r.durable, the copy of this node's own set that peers are
// served (full state, digest, version). A failed commit's deltas wait for
// the retry that rewrites their keys.

// pendingDelta is a local delta and the commit it waits for (nil: none).
type pendingDelta struct {
	d   Delta
	res *flushResult
}

// apply applies one of the set owner's deltas.
func (s *ownerSet) apply(d Delta) {
	k := d.Instance.Key()
	switch d.Op {
	case OpRemove:
		delete(s.inst, k)
		s.tombs[k] = d.Stamp
	case OpDrop:
		delete(s.inst, k)
		delete(s.tombs, k)
	default:
		s.inst[k] = d.Instance
		delete(s.tombs, k)
	}
	s.version = d.Version
}

func (s *ownerSet) clone() *ownerSet {
	c := &ownerSet{version: s.version, inst: make(map[Key]*Instance, len(s.inst)), tombs: make(map[Key]Stamp, len(s.tombs))}
	for k, in := range s.inst {
		c.inst[k] = in
	}
	for k, st := range s.tombs {
		c.tombs[k] = st
	}
	return c
}

// publishLocal queues local deltas for peers: at once without a Store,
// else once their commit succeeded. Callers hold r.mu.
func (r *Registry) publishLocal(ds []Delta, res *flushResult) {
	if r.durable == nil {
		r.deltas.append(ds...)
		close(r.localCh)
		r.localCh = make(chan struct{})
		return
	}
	for _, d := range ds {
		r.pending = append(r.pending, pendingDelta{d: d, res: res})
	}
	r.advanceDurable()
}

// advanceDurable publishes the leading pending deltas that are durable.
// Callers hold r.mu.
func (r *Registry) advanceDurable() {
	n := 0
	for n < len(r.pending) && (r.pending[n].res == nil || r.pending[n].res.ok) {
		r.durable.apply(r.pending[n].d)
		n++
	}
	if n == 0 {
		return
	}
	ds := make([]Delta, n)
	for i := range ds {
		ds[i] = r.pending[i].d
	}
	r.pending = append(r.pending[:0:0], r.pending[n:]...)
	r.deltas.append(ds...)
	close(r.localCh)
	r.localCh = make(chan struct{})
}

// repointPending makes the deltas that waited for a failed commit wait for
// the retry that rewrites their keys. Callers hold r.mu.
func (r *Registry) repointPending(failed, retry *flushResult) {
	for i := range r.pending {
		if r.pending[i].res == failed {
			r.pending[i].res = retry
		}
	}
}

// servedSet is the set of owner that peers are served: for this node with
// a Store, its durable copy. Callers hold r.mu.
func (r *Registry) servedSet(owner string) *ownerSet {
	if owner == r.cfg.Node && r.durable != nil {
		return r.durable
	}
	return r.owners[owner]
}
