package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Local writes: the registrations this node owns, their lifetimes (TTL
// checks, sessions) and the local delta log that peers replicate.

// Register adds or updates an instance owned by this node. A key held by
// another node is taken over: the new registration carries a stamp above
// every stamp this node has seen, so it wins everywhere, and the old owner
// drops its copy when it learns of it. Registering the same key with the
// same content again changes nothing and returns the stored stamp; with a
// Store it still returns only once that content is durable. The returned
// instance is the stored, normalized one.
func (r *Registry) Register(ctx context.Context, in *Instance) (*Instance, error) {
	in = in.Clone()
	if err := in.Normalize(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if err := r.admitLocked(in.Key()); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	r.keepDrain(in)
	tx := r.begin()
	in = r.putLocal(tx, in, true)
	gen := r.commit(tx)
	r.mu.Unlock()
	return in, r.waitDurable(ctx, gen)
}

// keepDrain keeps a drain across a session's re-registration. A client
// library registers again after every reconnect with the status it last
// set itself, so without this a network blip would undo an operator's
// drain. The session's own status change (or an undrain) lifts it.
func (r *Registry) keepDrain(in *Instance) {
	if in.Check.Kind != CheckSession || in.Status != StatusPassing && in.Status != StatusWarning {
		return
	}
	k := in.Key()
	if cur := r.owners[r.cfg.Node].inst[k]; cur != nil && cur.Check.Kind == CheckSession && cur.Status == StatusDraining {
		in.Status = StatusDraining
	} else if r.drained.take(k, r.cfg.Now()) {
		in.Status = StatusDraining
	}
	r.drained.forget(k)
}

// Deregister removes an instance. The key is replaced by a tombstone with
// a new stamp, which beats every older copy that is still travelling; an
// instance that another node owns is taken over the same way. It returns the
// tombstone's stamp.
func (r *Registry) Deregister(ctx context.Context, key Key) (Stamp, error) {
	key.Service = strings.ToLower(key.Service)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	if r.view[key.Service][key.ID] == nil {
		// A retry of a deregistration that is not yet on disk answers
		// like the first attempt, once it is.
		if st, ok := r.owners[r.cfg.Node].tombs[key]; ok && r.persist != nil && r.persist.pending(key) {
			tx := r.begin()
			r.retryDurable(tx, key)
			gen := r.commit(tx)
			r.mu.Unlock()
			return st, r.waitDurable(ctx, gen)
		}
		r.mu.Unlock()
		return 0, &NotFoundError{Key: key}
	}
	r.drained.forget(key)
	tx := r.begin()
	stamp := r.removeLocal(tx, key)
	gen := r.commit(tx)
	r.mu.Unlock()
	return stamp, r.waitDurable(ctx, gen)
}

// SetStatus sets the status of instances: one instance when id is set,
// every instance of service that this node owns when only service is set,
// and every instance this node owns when both are empty. A single plain
// instance that another node owns is taken over with the new status; TTL
// and session instances can only be changed through their owner. It returns
// how many instances matched and the highest stamp of the changes (0 when
// nothing changed).
func (r *Registry) SetStatus(ctx context.Context, service, id string, st Status) (int, Stamp, error) {
	if st == StatusUnknown || st > StatusDraining {
		return 0, 0, invalid("status", "must be passing, warning, critical or draining")
	}
	service = strings.ToLower(service)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, 0, ErrClosed
	}
	local := r.owners[r.cfg.Node].inst
	tx := r.begin()
	n := 0
	var stamp Stamp
	set := func(in *Instance) {
		n++
		if li := r.local[in.Key()]; li != nil && li.expired && st.Serving() {
			return // its TTL ran out: only a heartbeat makes it serve again
		}
		if in.Owner != r.cfg.Node || in.Status != st {
			c := in.Clone()
			c.Status = st
			stamp = max(stamp, r.putLocal(tx, c, false).Stamp)
		} else {
			r.retryDurable(tx, in.Key())
		}
	}
	if id != "" {
		k := Key{service, id}
		switch in := r.view[k.Service][k.ID]; {
		case in == nil:
			r.mu.Unlock()
			return 0, 0, &NotFoundError{Key: k}
		case in.Owner != r.cfg.Node && in.Check.Kind != CheckNone:
			r.mu.Unlock()
			return 0, 0, &NotOwnerError{Key: k, Owner: in.Owner}
		default:
			set(in)
		}
	} else {
		for k, in := range local {
			if service == "" || k.Service == service {
				set(in)
			}
		}
	}
	gen := r.commit(tx)
	r.mu.Unlock()
	if n == 0 && service != "" {
		return 0, 0, fmt.Errorf("registry: no instance of service %q is owned by node %q: %w", service, r.cfg.Node, ErrNotFound)
	}
	return n, stamp, r.waitDurable(ctx, gen)
}

// DrainForShutdown marks every local instance draining without persisting
// that status, so that clients stop sending new traffic before the node
// leaves, while a restart serves the stored instances again. It returns how
// many instances it drained.
//
// The drain keeps each instance's stamp: it is not a write, and the restart
// serves the stored instance at that stamp again. A new stamp would outrank
// a concurrent write of the key through another node, whose node would then
// drop its copy, and after the restart only the older stored copy would be
// left.
func (r *Registry) DrainForShutdown() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := r.begin()
	n := 0
	for _, in := range r.owners[r.cfg.Node].inst {
		if in.Status != StatusDraining {
			c := in.Clone()
			c.Status = StatusDraining
			r.putLocalAt(tx, c, false, in.Stamp)
			n++
		}
	}
	tx.dirty = nil
	r.commit(tx)
	return n
}

// Heartbeat renews a TTL instance. An instance that its TTL had turned
// critical becomes passing again.
func (r *Registry) Heartbeat(ctx context.Context, key Key) error {
	key.Service = strings.ToLower(key.Service)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ownedLocked(key); err != nil {
		return err
	}
	in := r.owners[r.cfg.Node].inst[key]
	if in.Check.Kind != CheckTTL {
		return invalid("check", "instance %s has no TTL check to renew", key)
	}
	li := r.local[key]
	li.deadline = r.cfg.Now().Add(in.Check.TTL)
	if li.expired {
		li.expired = false
		c := in.Clone()
		c.Status = StatusPassing
		tx := r.begin()
		r.putLocal(tx, c, true)
		r.commit(tx)
	}
	return nil
}

// RemoveSession removes every local instance registered by session. The
// instances end without tombstones: the session's client may already have
// registered them again through another node, and that must win.
func (r *Registry) RemoveSession(session string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := r.begin()
	var draining []*Instance
	for k := range r.sessions[session] {
		if in := r.owners[r.cfg.Node].inst[k]; in.Status == StatusDraining {
			draining = append(draining, in)
		}
		r.dropLocal(tx, k, false)
	}
	r.drained.rememberSession(draining, r.cfg.Now().Add(r.cfg.DrainMemory))
	delete(r.lost, session)
	r.commit(tx)
	return len(tx.deltas)
}

// LocalVersion returns the version of this node's own set as its peers get it
// (with a Store, as of its last change that is on disk).
func (r *Registry) LocalVersion() Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.servedSet(r.cfg.Node).version
}

// LocalChanged returns a channel that is closed at the next local delta.
func (r *Registry) LocalChanged() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.localCh
}

// LocalDeltasSince returns up to max local deltas of the current epoch after
// seq. It returns ErrCompacted when they are no longer all held; the peer
// then needs OwnerState.
func (r *Registry) LocalDeltasSince(seq uint64, max int) ([]Delta, error) {
	return r.deltas.since(seq, max)
}

func (r *Registry) ownedLocked(key Key) error {
	if r.closed {
		return ErrClosed
	}
	if _, ok := r.owners[r.cfg.Node].inst[key]; ok {
		return nil
	}
	if in := r.view[key.Service][key.ID]; in != nil {
		return &NotOwnerError{Key: key, Owner: in.Owner}
	}
	return &NotFoundError{Key: key}
}

// putLocal stores in (normalized) as this node's and records the delta. It
// returns the stored instance. renew restarts a TTL check's deadline: only a
// registration or a heartbeat does that, never a status change. Content
// equal to what this node holds keeps its stamp and changes nothing, but a
// plain instance is still persisted again, so that its writer only hears
// success once it is on disk.
func (r *Registry) putLocal(tx *txn, in *Instance, renew bool) *Instance {
	return r.putLocalAt(tx, in, renew, 0)
}

// putLocalAt is putLocal with the stamp to give the change: 0 for a new one.
func (r *Registry) putLocalAt(tx *txn, in *Instance, renew bool, stamp Stamp) *Instance {
	key := in.Key()
	set := r.owners[r.cfg.Node]
	old := set.inst[key]
	now := r.cfg.Now()
	in.Owner = r.cfg.Node
	if in.Check.Kind == CheckTTL {
		li := r.local[key]
		if li == nil {
			li = &localInfo{}
			r.local[key] = li
			renew = true
		}
		if renew {
			li.deadline = now.Add(in.Check.TTL)
			li.expired = false
		}
	} else {
		delete(r.local, key)
	}
	if old != nil && sameContent(old, in) {
		r.retryDurable(tx, key)
		return old
	}
	in.Updated = now
	in.Stamp = stamp
	if stamp == 0 {
		in.Stamp = r.clock.Next()
	}
	set.inst[key] = in
	delete(set.tombs, key)
	delete(r.tombBorn, key)
	if old != nil {
		r.unindexSession(old)
		if old.Check.Kind == CheckSession && in.Check != old.Check {
			// A newer registration through this node (another session,
			// or a plain one) replaced the session's copy: tell it, as a
			// takeover through another node does, so that its client
			// neither keeps nor later drains and deregisters the key.
			tx.lost = append(tx.lost, lostKey{session: old.Check.Session, key: key})
		}
	}
	if in.Check.Kind == CheckSession {
		keys := r.sessions[in.Check.Session]
		if keys == nil {
			keys = map[Key]struct{}{}
			r.sessions[in.Check.Session] = keys
		}
		keys[key] = struct{}{}
	}
	set.version.Seq++
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: set.version, Op: OpUpsert, Instance: in, Time: now, Stamp: in.Stamp})
	tx.touch(key)
	if plain(old) || plain(in) {
		tx.dirty = append(tx.dirty, key)
	}
	return in
}

// retryDurable makes a write that changes nothing wait for the disk when
// this node's entry of key is not yet known to be durable (a retry after a
// failed commit), so that it is acknowledged only once a commit succeeds.
func (r *Registry) retryDurable(tx *txn, key Key) {
	if r.persist != nil && r.persist.pending(key) {
		tx.dirty = append(tx.dirty, key)
	}
}

// plain reports whether in is a persisted kind of instance.
func plain(in *Instance) bool { return in != nil && in.Check.Kind == CheckNone }

// removeLocal replaces this node's entry of key (an instance, or nothing
// when the key is another owner's) with a tombstone at a new stamp and
// returns the stamp.
func (r *Registry) removeLocal(tx *txn, key Key) Stamp {
	set := r.owners[r.cfg.Node]
	old := set.inst[key]
	now := r.cfg.Now()
	stamp := r.clock.Next()
	delete(set.inst, key)
	delete(r.local, key)
	set.tombs[key] = stamp
	r.tombBorn[key] = now
	carrier := old
	if old != nil {
		r.unindexSession(old)
	} else {
		carrier = &Instance{Service: key.Service, ID: key.ID, Owner: r.cfg.Node}
	}
	set.version.Seq++
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: set.version, Op: OpRemove, Instance: carrier, Time: now, Stamp: stamp})
	tx.touch(key)
	if old == nil || plain(old) {
		tx.dirty = append(tx.dirty, key) // TTL and session instances are never stored
	}
	return stamp
}

// dropLocal forgets this node's entry of key (instance or tombstone)
// without leaving a tombstone: a newer write elsewhere replaced it, its
// session or TTL ended, or the tombstone expired. With notify, a session
// that held the instance is told that it lost it.
func (r *Registry) dropLocal(tx *txn, key Key, notify bool) {
	set := r.owners[r.cfg.Node]
	old := set.inst[key]
	_, tomb := set.tombs[key]
	if old == nil && !tomb {
		return
	}
	delete(set.inst, key)
	delete(set.tombs, key)
	delete(r.tombBorn, key)
	delete(r.local, key)
	carrier := &Instance{Service: key.Service, ID: key.ID, Owner: r.cfg.Node}
	if old != nil {
		carrier = old
		r.unindexSession(old)
		if notify && old.Check.Kind == CheckSession {
			tx.lost = append(tx.lost, lostKey{session: old.Check.Session, key: key})
		}
	}
	set.version.Seq++
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: set.version, Op: OpDrop, Instance: carrier, Time: r.cfg.Now()})
	tx.touch(key)
	if old == nil || plain(old) {
		tx.dirty = append(tx.dirty, key)
	}
}

// unindexSession drops a local instance from the session index.
func (r *Registry) unindexSession(in *Instance) {
	if in.Check.Kind != CheckSession {
		return
	}
	if keys := r.sessions[in.Check.Session]; keys != nil {
		delete(keys, in.Key())
		if len(keys) == 0 {
			delete(r.sessions, in.Check.Session)
		}
	}
}

func sameContent(a, b *Instance) bool {
	return a.Service == b.Service && a.ID == b.ID && a.Address == b.Address && a.Port == b.Port &&
		slices.Equal(a.Tags, b.Tags) && mapsEqual(a.Meta, b.Meta) && a.Weight == b.Weight &&
		a.Status == b.Status && a.Check == b.Check && a.CheckOutput == b.CheckOutput && a.Owner == b.Owner
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
