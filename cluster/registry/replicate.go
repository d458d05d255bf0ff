package registry

import (
	"cmp"
	"slices"
	"strings"
)

// Replication: applying peers' deltas and full states, reaping owners and
// the owner -> version digest for anti-entropy.

// Apply applies deltas received from peers. A delta applies only when it is
// the next of its owner's current epoch, or the first of a newer epoch (which
// replaces the owner's older state). Duplicates and older deltas are dropped.
// Each owner whose deltas do not follow what this node holds is returned as a
// gap; the caller repairs it by pulling that owner's full state.
func (r *Registry) Apply(deltas []Delta) []GapError {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gaps []GapError
	gapped := map[string]bool{}
	tx := r.begin()
	for _, d := range deltas {
		if d.Owner == r.cfg.Node || gapped[d.Owner] {
			continue
		}
		set := r.owners[d.Owner]
		var have Version
		if set != nil {
			have = set.version
		}
		switch {
		case set != nil && d.Version.Compare(have) <= 0:
			continue // duplicate or old
		case (set == nil || d.Version.Epoch > have.Epoch) && d.Version.Seq == 1:
			r.replaceOwnerLocked(tx, OwnerState{Owner: d.Owner, Version: Version{Epoch: d.Version.Epoch}})
			set = r.owners[d.Owner]
		case set == nil || d.Version.Epoch != have.Epoch || d.Version.Seq != have.Seq+1:
			gapped[d.Owner] = true
			gaps = append(gaps, GapError{Owner: d.Owner, Have: have, Got: d.Version})
			continue
		}
		set.apply(d)
		r.clock.Observe(max(d.Stamp, d.Instance.Stamp))
		tx.touch(d.Instance.Key())
	}
	r.resolveTakeovers(tx)
	r.commit(tx)
	return gaps
}

// ReplaceOwner installs the full state of a remote owner if it is newer than
// what this node holds. It reports whether it did.
func (r *Registry) ReplaceOwner(st OwnerState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.Owner == r.cfg.Node {
		return false
	}
	if set := r.owners[st.Owner]; set != nil && st.Version.Compare(set.version) <= 0 {
		return false
	}
	tx := r.begin()
	r.replaceOwnerLocked(tx, st)
	r.resolveTakeovers(tx)
	r.commit(tx)
	return true
}

// RemoveOwner drops everything a remote owner registered, when it has failed
// or left. It returns how many instances were removed.
func (r *Registry) RemoveOwner(owner string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.owners[owner]
	if owner == r.cfg.Node || set == nil {
		return 0
	}
	tx := r.begin()
	delete(r.owners, owner)
	for k := range set.inst {
		tx.touch(k)
	}
	for k, st := range set.tombs {
		r.adoptTombstone(tx, k, st)
		tx.touch(k)
	}
	r.commit(tx)
	return len(set.inst)
}

// adoptTombstone makes a departed owner's tombstone this node's own, with
// its stamp, so that it keeps hiding older copies of the key (on a node
// that was cut off, or in a data dir restored later) after the owner's set
// is reaped, and reaches every peer through this node's own deltas. It
// expires like this node's own tombstones. Callers hold r.mu.
func (r *Registry) adoptTombstone(tx *txn, key Key, stamp Stamp) {
	local := r.owners[r.cfg.Node]
	if in := local.inst[key]; in != nil && in.Stamp >= stamp {
		return // a newer write through this node
	}
	if cur, ok := local.tombs[key]; ok && cur >= stamp {
		return
	}
	if len(local.tombs) >= r.cfg.MaxTombstones {
		return // bounded like this node's own
	}
	if in := local.inst[key]; in != nil {
		r.dropLocal(tx, key, true) // cannot happen: it lost to the tombstone when that arrived
	}
	now := r.cfg.Now()
	local.tombs[key] = stamp
	r.tombBorn[key] = now
	local.version.Seq++
	carrier := &Instance{Service: key.Service, ID: key.ID, Owner: r.cfg.Node}
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: local.version, Op: OpRemove, Instance: carrier, Time: now, Stamp: stamp})
	tx.dirty = append(tx.dirty, key)
}

func (r *Registry) replaceOwnerLocked(tx *txn, st OwnerState) {
	if old := r.owners[st.Owner]; old != nil {
		for k := range old.inst {
			tx.touch(k)
		}
	}
	old := r.owners[st.Owner]
	set := &ownerSet{version: st.Version, inst: make(map[Key]*Instance, len(st.Instances)), tombs: make(map[Key]Stamp, len(st.Tombstones))}
	for _, t := range st.Tombstones {
		set.tombs[t.Key] = t.Stamp
		r.clock.Observe(t.Stamp)
		tx.touch(t.Key)
	}
	for _, in := range st.Instances {
		k := in.Key()
		// An unchanged instance keeps its pointer, so that installing a
		// full state only emits events for what really changed.
		if old != nil {
			if o := old.inst[k]; o != nil && o.Stamp == in.Stamp && sameContent(o, in) {
				in = o
			}
		}
		delete(set.tombs, k)
		set.inst[k] = in
		r.clock.Observe(in.Stamp)
		tx.touch(k)
	}
	if old != nil {
		for k := range old.tombs {
			tx.touch(k)
		}
	}
	r.owners[st.Owner] = set
}

// OwnerState returns the full state of an owner, local or remote.
func (r *Registry) OwnerState(owner string) (OwnerState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.servedSet(owner)
	if set == nil {
		return OwnerState{}, false
	}
	st := OwnerState{Owner: owner, Version: set.version, Instances: make([]*Instance, 0, len(set.inst))}
	for _, in := range set.inst {
		st.Instances = append(st.Instances, in)
	}
	slices.SortFunc(st.Instances, func(a, b *Instance) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.ID, b.ID))
	})
	for k, s := range set.tombs {
		st.Tombstones = append(st.Tombstones, Tombstone{Key: k, Stamp: s})
	}
	slices.SortFunc(st.Tombstones, func(a, b Tombstone) int {
		return cmp.Or(strings.Compare(a.Key.Service, b.Key.Service), strings.Compare(a.Key.ID, b.Key.ID))
	})
	return st, true
}

// Digest returns the version held for every owner.
func (r *Registry) Digest() map[string]Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := make(map[string]Version, len(r.owners))
	for o := range r.owners {
		d[o] = r.servedSet(o).version
	}
	return d
}

// SetNode adds or updates a cluster node served under <node>.node.<domain>.
func (r *Registry) SetNode(n Node) {
	n.Name = strings.ToLower(n.Name)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updateNodes(func(m map[string]Node) { m[n.Name] = n })
}

// RemoveNode removes a cluster node from DNS.
func (r *Registry) RemoveNode(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updateNodes(func(m map[string]Node) { delete(m, strings.ToLower(name)) })
}

func (r *Registry) updateNodes(f func(map[string]Node)) {
	old := r.snap.Load()
	next := old.successor()
	next.nodes = make(map[string]Node, len(old.nodes)+1)
	for k, v := range old.nodes {
		next.nodes[k] = v
	}
	f(next.nodes)
	r.snap.Store(next)
	close(old.next)
}
