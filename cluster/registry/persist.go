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

	mu    sync.Mutex
	dirty map[Key]struct{}
	// next is the outcome of the commit that will write the keys marked
	// so far: each writer waits for the commit that took its keys, and
	// hears that commit's error, not a later or an earlier one's.
	next *flushResult
	kick chan struct{}

	// writing holds the keys of the commit under way.
	writing map[Key]struct{}
}

// flushResult is the outcome of one commit: err is set before done closes.
type flushResult struct {
	done chan struct{}
	err  error
	ok   bool // the commit succeeded; guarded by the registry's mu
}

func newFlushResult() *flushResult { return &flushResult{done: make(chan struct{})} }

func newPersister(s Store) *persister {
	return &persister{store: s, dirty: map[Key]struct{}{}, next: newFlushResult(), kick: make(chan struct{}, 1)}
}

// mark records dirty keys and returns the outcome to wait for.
func (p *persister) mark(keys []Key) *flushResult {
	p.mu.Lock()
	for _, k := range keys {
		p.dirty[k] = struct{}{}
	}
	res := p.next
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return res
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

func (p *persister) wait(ctx context.Context, res *flushResult) error {
	select {
	case <-res.done:
		if res.err != nil {
			return fmt.Errorf("registry: %w: %w", ErrNotDurable, res.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("registry: waiting for the registration to be persisted: %w", ctx.Err())
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
	keys, res := p.dirty, p.next
	if len(keys) == 0 {
		p.mu.Unlock()
		return
	}
	p.dirty, p.writing, p.next = map[Key]struct{}{}, keys, newFlushResult()
	p.mu.Unlock()
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
	r.mu.Lock() // before p.mu, as in commit
	p.mu.Lock()
	p.writing = nil
	if err != nil {
		// Keep the keys dirty and retry them in a second, even if no
		// other write comes along; their deltas wait for that retry.
		for k := range keys {
			p.dirty[k] = struct{}{}
		}
		r.repointPending(res, p.next)
		time.AfterFunc(time.Second, func() {
			select {
			case p.kick <- struct{}{}:
			default:
			}
		})
	} else {
		res.ok = true
		if r.durable != nil {
			// Peers get the changes before their writers hear success.
			r.advanceDurable()
		}
	}
	res.err = err
	close(res.done)
	p.mu.Unlock()
	r.mu.Unlock()
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
	now := r.cfg.Now()
	for _, t := range st.Tombstones {
		r.clock.Observe(t.Stamp)
		if cur := set.inst[t.Key]; cur != nil && cur.Stamp >= t.Stamp {
			continue
		}
		delete(set.inst, t.Key)
		set.tombs[t.Key] = t.Stamp
		// The store keeps no birth time: a stamp in the past dates the
		// tombstone, one ahead of the clock counts from now.
		born := t.Stamp.Time()
		if born.After(now) {
			born = now
		}
		r.tombBorn[t.Key] = born
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
