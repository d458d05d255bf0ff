package registry

import (
	"slices"
	"time"
)

// Expiry: TTL checks that turn critical and then end, and tombstones that
// outlive their TTL or the node's bound.

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
	r.drained.expire(now)
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
		r.dropLocal(tx, key, false)
	}
	if len(set.tombs) > 0 && now.Sub(r.lastTombGC) >= time.Second {
		r.lastTombGC = now
		r.expireTombstones(tx, now)
	}
	r.commit(tx)
}

// expireTombstones drops this node's tombstones made more than
// TombstoneTTL ago, and the oldest ones beyond MaxTombstones, so that churn
// through unique keys cannot grow memory without bound. Peers forget them
// with the drops.
func (r *Registry) expireTombstones(tx *txn, now time.Time) {
	set := r.owners[r.cfg.Node]
	born := now.Add(-r.cfg.TombstoneTTL)
	var horizon Stamp
	if excess := len(set.tombs) - r.cfg.MaxTombstones; excess > 0 {
		stamps := make([]Stamp, 0, len(set.tombs))
		for _, st := range set.tombs {
			stamps = append(stamps, st)
		}
		slices.Sort(stamps)
		horizon = stamps[excess-1] + 1
	}
	for key, st := range set.tombs {
		made, ok := r.tombBorn[key]
		if !ok { // never without one; if so, count from now rather than drop it
			made = now
			r.tombBorn[key] = now
		}
		if st < horizon || made.Before(born) {
			r.dropLocal(tx, key, false)
		}
	}
}
