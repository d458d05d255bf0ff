package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Op is the kind of a change.
type Op uint8

// Ops.
const (
	OpUpsert Op = iota + 1
	OpRemove
)

func (o Op) String() string {
	if o == OpRemove {
		return "remove"
	}
	return "upsert"
}

// Event is one change of the merged view, numbered by the local revision.
type Event struct {
	Rev uint64
	Op  Op
	// Instance is the new state for OpUpsert and the last state for OpRemove.
	Instance *Instance
}

// Version orders the changes of one owner's set. Epoch changes when the owner
// restarts; Seq rises by one with every change within an epoch.
type Version struct {
	Epoch uint64
	Seq   uint64
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Epoch, v.Seq) }

// Compare orders versions: epoch first, then seq.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Epoch, o.Epoch); c != 0 {
		return c
	}
	return cmp.Compare(v.Seq, o.Seq)
}

// Delta is one change of one owner's set, as replicated to peers.
type Delta struct {
	Owner string
	// Version is the owner's version after this change.
	Version Version
	Op      Op
	// Instance is the new state for OpUpsert, and carries at least the key
	// for OpRemove.
	Instance *Instance
	// Time is the owner's wall clock when it made the change.
	Time time.Time
}

// OwnerState is the full set of one owner at a version.
type OwnerState struct {
	Owner     string
	Version   Version
	Instances []*Instance
}

// Store persists the plain registrations that this node owns.
type Store interface {
	// Load returns the stored instances.
	Load() ([]*Instance, error)
	// Commit writes puts and deletes in one atomic transaction.
	Commit(puts []*Instance, deletes []Key) error
}

// EpochStore is a Store that also keeps the last epoch, so that epochs rise
// across restarts even when the clock went backwards in between.
type EpochStore interface {
	LastEpoch() (uint64, error)
	SaveEpoch(uint64) error
}

// Config configures a Registry. The zero value of every field but Node
// selects its default.
type Config struct {
	// Node is the name of this node, the owner of local registrations.
	// Required.
	Node string
	// Epoch of this run. Default: the current time in nanoseconds, so that it
	// rises across restarts.
	Epoch uint64
	// History is how many view events are kept for watchers to resume from.
	// Default 16384.
	History int
	// DeltaLog is how many local deltas are kept for peers to catch up from
	// before they need full state. Default 16384.
	DeltaLog int
	// CheckInterval is how often TTL checks are evaluated. Default 100ms.
	CheckInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Store persists plain local registrations. Default nil: memory only.
	Store Store
}

func (c *Config) setDefaults() error {
	c.Node = strings.ToLower(c.Node)
	if !ValidName(c.Node) {
		return fmt.Errorf("registry: node name %q must be a DNS label (letters, digits, inner hyphens, at most 63 bytes)", c.Node)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Epoch == 0 {
		c.Epoch = uint64(c.Now().UnixNano())
	}
	if c.History <= 0 {
		c.History = 16384
	}
	if c.DeltaLog <= 0 {
		c.DeltaLog = 16384
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = 100 * time.Millisecond
	}
	return nil
}

type ownerSet struct {
	version Version
	inst    map[Key]*Instance
}

// local holds what only the owner knows about its own instances.
type localInfo struct {
	deadline time.Time // TTL checks: when the instance turns critical
	expired  bool      // turned critical by its TTL
}

// Registry is the in-memory registry of one node. Its methods are safe for
// concurrent use. Reads (Snapshot, EventsSince) never wait for writes.
type Registry struct {
	cfg Config

	mu     sync.Mutex
	owners map[string]*ownerSet
	view   map[string]map[string]*Instance // service -> id -> winning instance
	local  map[Key]*localInfo
	// sessions indexes the local session instances by their session.
	sessions map[string]map[Key]struct{}
	closed   bool

	snap    atomic.Pointer[Snapshot]
	events  *history[Event]
	deltas  *history[Delta]
	localCh chan struct{} // closed and replaced on every local delta

	persist *persister
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New creates a registry, reloads the stored registrations under the new
// epoch and starts its TTL loop. Close stops it.
func New(cfg Config) (*Registry, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if es, ok := cfg.Store.(EpochStore); ok {
		last, err := es.LastEpoch()
		if err != nil {
			return nil, fmt.Errorf("registry: load the last epoch: %w", err)
		}
		if cfg.Epoch <= last { // the clock went backwards since the last run
			cfg.Epoch = last + 1
		}
		if err := es.SaveEpoch(cfg.Epoch); err != nil {
			return nil, fmt.Errorf("registry: save the epoch: %w", err)
		}
	}
	r := &Registry{
		cfg:      cfg,
		owners:   map[string]*ownerSet{cfg.Node: {version: Version{Epoch: cfg.Epoch}, inst: map[Key]*Instance{}}},
		view:     map[string]map[string]*Instance{},
		local:    map[Key]*localInfo{},
		sessions: map[string]map[Key]struct{}{},
		events:   newHistory[Event](cfg.History),
		deltas:   newHistory[Delta](cfg.DeltaLog),
		localCh:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	r.snap.Store(&Snapshot{
		origin: fmt.Sprintf("%s@%d", cfg.Node, cfg.Epoch),
		nodes:  map[string]Node{},
		next:   make(chan struct{}),
	})
	if cfg.Store != nil {
		stored, err := cfg.Store.Load()
		if err != nil {
			return nil, fmt.Errorf("registry: load stored registrations: %w", err)
		}
		for _, in := range stored {
			in.Check = Check{}
			if err := in.Normalize(); err != nil {
				return nil, fmt.Errorf("registry: stored registration %s: %w", in.Key(), err)
			}
			tx := r.begin()
			r.putLocal(tx, in, true)
			r.commit(tx)
		}
		r.persist = newPersister(cfg.Store)
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.persist.run(r, r.stop) }()
	}
	r.wg.Add(1)
	go r.ttlLoop()
	return r, nil
}

// Close stops the registry's goroutines. It is idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// NodeName returns this node's name.
func (r *Registry) NodeName() string { return r.cfg.Node }

// Epoch returns this run's epoch.
func (r *Registry) Epoch() uint64 { return r.cfg.Epoch }

// Snapshot returns the current immutable view.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// EventsSince returns up to max view events after revision rev, oldest first.
// It returns ErrCompacted when the history no longer reaches back to rev.
func (r *Registry) EventsSince(rev uint64, max int) ([]Event, error) {
	return r.events.since(rev, max)
}

// ---- local writes -------------------------------------------------------

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
	tx := r.begin()
	in = r.putLocal(tx, in, true)
	gen := r.commit(tx)
	r.mu.Unlock()
	return in, r.waitDurable(ctx, gen)
}

// Deregister removes an instance owned by this node.
func (r *Registry) Deregister(ctx context.Context, key Key) error {
	key.Service = strings.ToLower(key.Service)
	r.mu.Lock()
	if err := r.ownedLocked(key); err != nil {
		r.mu.Unlock()
		return err
	}
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
	for k := range r.sessions[session] {
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
	tx.touch(r, key)
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
	tx.touch(r, key)
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

// ---- replication --------------------------------------------------------

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
		key := d.Instance.Key()
		if d.Op == OpRemove {
			delete(set.inst, key)
		} else {
			set.inst[key] = d.Instance
		}
		set.version = d.Version
		tx.touch(r, key)
	}
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
		tx.touch(r, k)
	}
	r.commit(tx)
	return len(set.inst)
}

func (r *Registry) replaceOwnerLocked(tx *txn, st OwnerState) {
	if old := r.owners[st.Owner]; old != nil {
		for k := range old.inst {
			tx.touch(r, k)
		}
	}
	old := r.owners[st.Owner]
	set := &ownerSet{version: st.Version, inst: make(map[Key]*Instance, len(st.Instances))}
	for _, in := range st.Instances {
		k := in.Key()
		// An unchanged instance keeps its pointer, so that installing a
		// full state only emits events for what really changed.
		if old != nil {
			if o := old.inst[k]; o != nil && o.Updated.Equal(in.Updated) && sameContent(o, in) {
				in = o
			}
		}
		set.inst[k] = in
		tx.touch(r, k)
	}
	r.owners[st.Owner] = set
}

// OwnerState returns the full state of an owner, local or remote.
func (r *Registry) OwnerState(owner string) (OwnerState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.owners[owner]
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
	return st, true
}

// Digest returns the version held for every owner.
func (r *Registry) Digest() map[string]Version {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := make(map[string]Version, len(r.owners))
	for o, set := range r.owners {
		d[o] = set.version
	}
	return d
}

// ---- nodes ---------------------------------------------------------------

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

// ---- transactions ----------------------------------------------------------

// txn collects the effects of one locked write: the local deltas, the keys of
// the merged view to recompute and the persisted keys that changed.
type txn struct {
	deltas  []Delta
	touched map[Key]struct{}
	dirty   []Key
}

func (r *Registry) begin() *txn { return &txn{} }

func (tx *txn) touch(_ *Registry, k Key) {
	if tx.touched == nil {
		tx.touched = map[Key]struct{}{}
	}
	tx.touched[k] = struct{}{}
}

// commit recomputes the merged view for the touched keys, records events and
// deltas, publishes a new snapshot and wakes the readers. It returns the
// persistence generation the caller must wait for (0 if none).
func (r *Registry) commit(tx *txn) uint64 {
	if len(tx.touched) == 0 && len(tx.deltas) == 0 {
		return 0
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
		next.setService(name, &Service{Name: name, Rev: next.rev, Instances: serviceInstances(old.Service(name), svc, ids)})
	}
	if len(tx.deltas) > 0 {
		r.deltas.append(tx.deltas...)
		close(r.localCh)
		r.localCh = make(chan struct{})
	}
	var gen uint64
	if r.persist != nil && len(tx.dirty) > 0 {
		gen = r.persist.mark(tx.dirty)
	}
	if len(events) > 0 {
		r.events.append(events...)
		r.snap.Store(next)
		close(old.next)
	}
	return gen
}

// winner picks the instance that the merged view shows for k: of the owners
// that hold k, the latest update wins, ties broken by owner name, so that
// every node picks the same one.
func (r *Registry) winner(k Key) *Instance {
	var win *Instance
	for _, set := range r.owners {
		in := set.inst[k]
		if in == nil {
			continue
		}
		if win == nil || in.Updated.After(win.Updated) || (in.Updated.Equal(win.Updated) && in.Owner > win.Owner) {
			win = in
		}
	}
	return win
}

func (r *Registry) waitDurable(ctx context.Context, gen uint64) error {
	if gen == 0 || r.persist == nil {
		return nil
	}
	return r.persist.wait(ctx, gen)
}

// errPersist wraps store failures.
var errPersist = errors.New("registry: registration applied in memory but not persisted")

// serviceInstances returns the sorted instance list of a service whose view
// is svc, given its previous state and the ids that changed. A few changes to
// a large service patch a copy of the previous list, so that a burst of
// registrations into one service costs O(n) each rather than O(n log n).
func serviceInstances(prev *Service, svc map[string]*Instance, ids []string) []*Instance {
	if prev == nil || len(ids) > len(prev.Instances)/4+1 {
		insts := make([]*Instance, 0, len(svc))
		for _, in := range svc {
			insts = append(insts, in)
		}
		slices.SortFunc(insts, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
		return insts
	}
	insts := make([]*Instance, len(prev.Instances), len(prev.Instances)+len(ids))
	copy(insts, prev.Instances)
	for _, id := range ids {
		i, found := slices.BinarySearchFunc(insts, id, func(in *Instance, id string) int { return strings.Compare(in.ID, id) })
		switch in := svc[id]; {
		case in == nil && found:
			insts = slices.Delete(insts, i, i+1)
		case in != nil && found:
			insts[i] = in
		case in != nil:
			insts = slices.Insert(insts, i, in)
		}
	}
	return insts
}
