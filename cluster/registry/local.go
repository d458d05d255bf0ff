package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Local writes: the registrations this node owns, their lifetimes (TTL
// checks, sessions) and the local delta log that peers replicate.

// Register adds or updates an instance owned by this node. Registering the
// same key with the same content again changes nothing. The returned
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
	r.keepDrain(in)
	tx := r.begin()
	in = r.putLocal(tx, in, true)
	gen := r.commit(tx)
	if gen == 0 && r.persist != nil && in.Check.Kind == CheckNone && r.persist.pending(in.Key()) {
		// The same content again, but not yet durable (a retry after a
		// failed commit): acknowledge it only once a commit of it succeeds.
		gen = r.persist.mark([]Key{in.Key()})
	}
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
	} else if until, ok := r.drained[k]; ok && r.cfg.Now().Before(until) {
		in.Status = StatusDraining
	}
	delete(r.drained, k)
}

// Deregister removes an instance owned by this node.
func (r *Registry) Deregister(ctx context.Context, key Key) error {
	key.Service = strings.ToLower(key.Service)
	r.mu.Lock()
	if err := r.ownedLocked(key); err != nil {
		r.mu.Unlock()
		return err
	}
	delete(r.drained, key)
	tx := r.begin()
	r.removeLocal(tx, key)
	gen := r.commit(tx)
	r.mu.Unlock()
	return r.waitDurable(ctx, gen)
}

// SetStatus sets the status of local instances: one instance when id is set,
// every instance of service when only service is set, and every instance this
// node owns when both are empty. It returns how many instances matched.
func (r *Registry) SetStatus(ctx context.Context, service, id string, st Status) (int, error) {
	if st == StatusUnknown || st > StatusDraining {
		return 0, invalid("status", "must be passing, warning, critical or draining")
	}
	service = strings.ToLower(service)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	if id != "" {
		if err := r.ownedLocked(Key{service, id}); err != nil {
			r.mu.Unlock()
			return 0, err
		}
	}
	tx := r.begin()
	n := 0
	for k, in := range r.owners[r.cfg.Node].inst {
		if (service != "" && k.Service != service) || (id != "" && k.ID != id) {
			continue
		}
		n++
		if li := r.local[k]; li != nil && li.expired && st.Serving() {
			continue // its TTL ran out: only a heartbeat makes it serve again
		}
		if in.Status != st {
			c := in.Clone()
			c.Status = st
			r.putLocal(tx, c, false)
		}
	}
	gen := r.commit(tx)
	r.mu.Unlock()
	if n == 0 && service != "" {
		return 0, fmt.Errorf("registry: no instance of service %q is owned by node %q: %w", service, r.cfg.Node, ErrNotFound)
	}
	return n, r.waitDurable(ctx, gen)
}

// DrainForShutdown marks every local instance draining without persisting
// that status, so that clients stop sending new traffic before the node
// leaves, while a restart serves the stored instances again. It returns how
// many instances it drained.
func (r *Registry) DrainForShutdown() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := r.begin()
	n := 0
	for _, in := range r.owners[r.cfg.Node].inst {
		if in.Status != StatusDraining {
			c := in.Clone()
			c.Status = StatusDraining
			r.putLocal(tx, c, false)
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

// RemoveSession removes every local instance registered by session.
func (r *Registry) RemoveSession(session string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := r.begin()
	now := r.cfg.Now()
	for k := range r.sessions[session] {
		if in := r.owners[r.cfg.Node].inst[k]; in.Status == StatusDraining && len(r.drained) < maxDrained {
			r.drained[k] = now.Add(r.cfg.DrainMemory)
		}
		r.removeLocal(tx, k)
	}
	r.commit(tx)
	return len(tx.deltas)
}

// LocalVersion returns the version of this node's own set.
func (r *Registry) LocalVersion() Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owners[r.cfg.Node].version
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
// registration or a heartbeat does that, never a status change.
func (r *Registry) putLocal(tx *txn, in *Instance, renew bool) *Instance {
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
		return old
	}
	in.Updated = now
	set.inst[key] = in
	if old != nil {
		r.unindexSession(old)
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
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: set.version, Op: OpUpsert, Instance: in, Time: now})
	tx.touch(key)
	if (old != nil && old.Check.Kind == CheckNone) || in.Check.Kind == CheckNone {
		tx.dirty = append(tx.dirty, key)
	}
	return in
}

func (r *Registry) removeLocal(tx *txn, key Key) {
	set := r.owners[r.cfg.Node]
	old := set.inst[key]
	if old == nil {
		return
	}
	now := r.cfg.Now()
	delete(set.inst, key)
	delete(r.local, key)
	r.unindexSession(old)
	set.version.Seq++
	tx.deltas = append(tx.deltas, Delta{Owner: r.cfg.Node, Version: set.version, Op: OpRemove, Instance: old, Time: now})
	tx.touch(key)
	if old.Check.Kind == CheckNone {
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
		a.Status == b.Status && a.Check == b.Check && a.Owner == b.Owner
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

func (r *Registry) ttlLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.expireTTLs()
		}
	}
}

// expireTTLs turns overdue TTL instances critical, and removes those that
// stayed critical for a further TTL.
func (r *Registry) expireTTLs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	for k, until := range r.drained {
		if !now.Before(until) {
			delete(r.drained, k)
		}
	}
	set := r.owners[r.cfg.Node]
	tx := r.begin()
	for key, li := range r.local {
		in := set.inst[key]
		if in == nil || now.Before(li.deadline) {
			continue
		}
		if !li.expired {
			li.expired, li.deadline = true, li.deadline.Add(in.Check.TTL)
			if in.Status != StatusCritical {
				c := in.Clone()
				c.Status = StatusCritical
				r.putLocal(tx, c, false)
			}
			continue
		}
		r.removeLocal(tx, key)
	}
	r.commit(tx)
}
