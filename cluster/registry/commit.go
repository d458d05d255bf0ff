package registry

import (
	"cmp"
	"context"
	"slices"
	"strings"
)

// Commits: every locked write collects its effects in a txn; commit turns
// them into the merged view, events, deltas and a new snapshot.

// txn collects the effects of one locked write: the local deltas, the keys of
// the merged view to recompute and the persisted keys that changed.
type txn struct {
	deltas  []Delta
	touched map[Key]struct{}
	dirty   []Key
	lost    []lostKey
}

func (r *Registry) begin() *txn { return &txn{} }

func (tx *txn) touch(k Key) {
	if tx.touched == nil {
		tx.touched = map[Key]struct{}{}
	}
	tx.touched[k] = struct{}{}
}

// commit recomputes the merged view for the touched keys, records events and
// deltas, publishes a new snapshot and wakes the readers. It returns the
// commit to the store that the caller must wait for (nil if none).
func (r *Registry) commit(tx *txn) *flushResult {
	var gen *flushResult
	if r.persist != nil && len(tx.dirty) > 0 {
		gen = r.persist.mark(tx.dirty)
	}
	r.notifyLost(tx.lost)
	if len(tx.touched) == 0 && len(tx.deltas) == 0 {
		return gen
	}
	old := r.snap.Load()
	next := old.successor()
	var events []Event
	changed := map[string][]string{} // service -> ids whose winner changed
	for k := range tx.touched {
		prev := r.view[k.Service][k.ID]
		win := r.winner(k)
		if win == prev {
			continue
		}
		svc := r.view[k.Service]
		if win == nil {
			delete(svc, k.ID)
			if len(svc) == 0 {
				delete(r.view, k.Service)
			}
			events = append(events, Event{Op: OpRemove, Instance: prev})
		} else {
			if svc == nil {
				svc = map[string]*Instance{}
				r.view[k.Service] = svc
			}
			svc[k.ID] = win
			events = append(events, Event{Op: OpUpsert, Instance: win})
		}
		changed[k.Service] = append(changed[k.Service], k.ID)
	}
	// Events in a stable order, so that every watcher sees the same sequence.
	slices.SortFunc(events, func(a, b Event) int {
		return cmp.Or(strings.Compare(a.Instance.Service, b.Instance.Service), strings.Compare(a.Instance.ID, b.Instance.ID))
	})
	for i := range events {
		next.rev++
		events[i].Rev = next.rev
	}
	for name, ids := range changed {
		svc := r.view[name]
		if len(svc) == 0 {
			next.setService(name, nil)
			continue
		}
		next.setService(name, serviceAfter(old.Service(name), name, next.rev, svc, ids))
	}
	if len(tx.deltas) > 0 {
		r.publishLocal(tx.deltas, gen)
	}
	if len(events) > 0 {
		r.events.append(events...)
		r.snap.Store(next)
		close(old.next)
	}
	return gen
}

// winner picks the instance that the merged view shows for k: of every
// owner's instance or tombstone of k, the highest stamp wins, ties broken by
// owner name, so that every node picks the same one. A winning tombstone
// means the key is absent.
func (r *Registry) winner(k Key) *Instance {
	var win *Instance
	var best Stamp
	var bestOwner string
	for owner, set := range r.owners {
		in := set.inst[k]
		st, tomb := set.tombs[k]
		if in != nil {
			st = in.Stamp
		} else if !tomb {
			continue
		}
		if bestOwner == "" || st > best || (st == best && owner > bestOwner) {
			win, best, bestOwner = in, st, owner
		}
	}
	return win
}

// resolveTakeovers drops this node's own instances of the touched keys that
// a newer write through another node has replaced, so that one live
// registration per key remains. Callers hold r.mu, after applying remote
// state to tx.
//
// A tombstone is kept even when a newer write replaced it: that write may
// end without a tombstone of its own (a session or TTL instance), and the
// older copies the tombstone hides, on a partitioned side or in a peer's
// retry, must not come back then. It leaves at its TTL or MaxTombstones.
func (r *Registry) resolveTakeovers(tx *txn) {
	local := r.owners[r.cfg.Node]
	var lose []Key
	for k := range tx.touched {
		in := local.inst[k]
		if in == nil {
			continue
		}
		mine := in.Stamp
		for owner, set := range r.owners {
			if owner == r.cfg.Node {
				continue
			}
			theirs, has := set.tombs[k]
			if in := set.inst[k]; in != nil {
				theirs, has = in.Stamp, true
			}
			if has && (theirs > mine || (theirs == mine && owner > r.cfg.Node)) {
				lose = append(lose, k)
				break
			}
		}
	}
	for _, k := range lose {
		r.dropLocal(tx, k, true)
	}
}

func (r *Registry) waitDurable(ctx context.Context, gen *flushResult) error {
	if gen == nil || r.persist == nil {
		return nil
	}
	return r.persist.wait(ctx, gen)
}
