package registry

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// persister writes the node's plain registrations to the Store with group
// commit: writers mark keys dirty and wait; one goroutine writes the current
// state of all dirty keys in one transaction. Writes are ordered by
// construction, because it always writes the latest state.
type persister struct {
	store Store

	mu      sync.Mutex
	dirty   map[Key]struct{}
	gen     uint64 // last generation marked
	done    uint64 // last generation durable
	err     error  // error of the last failed commit
	errGen  uint64 // generation that error covers
	kick    chan struct{}
	flushed chan struct{} // closed and replaced after each commit

	// writing holds the keys of the commit under way.
	writing map[Key]struct{}
}

func newPersister(s Store) *persister {
	return &persister{store: s, dirty: map[Key]struct{}{}, kick: make(chan struct{}, 1), flushed: make(chan struct{})}
}

// mark records dirty keys and returns the generation to wait for.
func (p *persister) mark(keys []Key) uint64 {
	p.mu.Lock()
	for _, k := range keys {
		p.dirty[k] = struct{}{}
	}
	p.gen++
	g := p.gen
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return g
}

// pending reports whether the latest state of k is not yet known to be
// durable: it is waiting for a commit, being committed, or its commit failed.
func (p *persister) pending(k Key) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, dirty := p.dirty[k]
	_, writing := p.writing[k]
	return dirty || writing
}

func (p *persister) wait(ctx context.Context, gen uint64) error {
	for {
		p.mu.Lock()
		done, err, errGen, ch := p.done, p.err, p.errGen, p.flushed
		p.mu.Unlock()
		if done >= gen {
			if err != nil && errGen >= gen {
				return fmt.Errorf("registry: %w: %w", ErrNotDurable, err)
			}
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("registry: waiting for the registration to be persisted: %w", ctx.Err())
		}
	}
}

func (p *persister) run(r *Registry, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			p.flush(r) // last writes before shutdown
			return
		case <-p.kick:
			p.flush(r)
		}
	}
}

func (p *persister) flush(r *Registry) {
	p.mu.Lock()
	keys, gen := p.dirty, p.gen
	p.dirty, p.writing = map[Key]struct{}{}, keys
	p.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	var b Batch
	r.mu.Lock()
	set := r.owners[r.cfg.Node]
	for k := range keys {
		if in := set.inst[k]; in != nil && in.Check.Kind == CheckNone {
			b.Puts = append(b.Puts, in)
		} else if st, ok := set.tombs[k]; ok {
			b.Tombstones = append(b.Tombstones, Tombstone{Key: k, Stamp: st})
		} else {
			b.Deletes = append(b.Deletes, k)
		}
	}
	b.Clock = r.clock.Last()
	r.mu.Unlock()
	err := p.store.Commit(b)
	p.mu.Lock()
	p.done, p.writing = gen, nil
	if err != nil {
		p.err, p.errGen = err, gen
		// Keep the keys dirty and retry them in a second, even if no
		// other write comes along.
		for k := range keys {
			p.dirty[k] = struct{}{}
		}
		time.AfterFunc(time.Second, func() {
			select {
			case p.kick <- struct{}{}:
			default:
			}
		})
	}
	close(p.flushed)
	p.flushed = make(chan struct{})
	p.mu.Unlock()
}

// loadStored installs the stored state as this node's own set under the new
// epoch, in one commit, and makes the clock issue stamps above every stored
// one.
func (r *Registry) loadStored(st Stored) error {
	r.clock.Observe(st.Clock)
	set := r.owners[r.cfg.Node]
	tx := r.begin()
	for _, in := range st.Instances {
		in.Check = Check{}
		if err := in.Normalize(); err != nil {
			return fmt.Errorf("registry: stored registration %s: %w", in.Key(), err)
		}
		in.Owner = r.cfg.Node
		r.clock.Observe(in.Stamp)
		set.inst[in.Key()] = in
		tx.touch(in.Key())
	}
	for _, t := range st.Tombstones {
		r.clock.Observe(t.Stamp)
		if cur := set.inst[t.Key]; cur != nil && cur.Stamp >= t.Stamp {
			continue
		}
		delete(set.inst, t.Key)
		set.tombs[t.Key] = t.Stamp
		tx.touch(t.Key)
	}
	if len(set.inst)+len(set.tombs) > 0 {
		// The loaded state is change 1 of the epoch, not in the delta log:
		// peers get it as full state, and no delta 1 can make them start
		// the owner's set from empty.
		set.version.Seq++
		r.deltas.startAfter(set.version.Seq)
	}
	r.commit(tx)
	return nil
}
