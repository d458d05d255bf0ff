package registry

import (
	"cmp"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Op is the kind of a change.
type Op uint8

// Ops.
const (
	OpUpsert Op = iota + 1
	// OpRemove removes an instance. In a Delta it leaves a tombstone at the
	// delta's stamp.
	OpRemove
	// OpDrop only occurs in Deltas: the owner forgot its entry of a key
	// (instance or tombstone) without a tombstone, because a newer write
	// elsewhere replaced its instance, its session or TTL ended, or the
	// tombstone expired.
	OpDrop
)

func (o Op) String() string {
	switch o {
	case OpRemove:
		return "remove"
	case OpDrop:
		return "drop"
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
	// for OpRemove and OpDrop.
	Instance *Instance
	// Time is the owner's wall clock when it made the change.
	Time time.Time
	// Stamp is the change's stamp: the instance's for OpUpsert, the
	// tombstone's for OpRemove, none for OpDrop.
	Stamp Stamp
}

// OwnerState is the full set of one owner at a version.
type OwnerState struct {
	Owner      string
	Version    Version
	Instances  []*Instance
	Tombstones []Tombstone
}

// Stored is what a Store holds of this node's own state.
type Stored struct {
	// Instances are the plain registrations this node owns, stamps set.
	Instances []*Instance
	// Tombstones are the keys this node deregistered, not yet expired.
	Tombstones []Tombstone
	// Clock is the highest stamp the node had issued or seen at its last
	// commit, so that a restart never issues a lower one, even when the
	// clock was stepped back in between.
	Clock Stamp
}

// Batch is one atomic commit of a Store. A key is in at most one of Puts,
// Tombstones and Deletes; storing one form of a key replaces the other.
type Batch struct {
	Puts       []*Instance
	Tombstones []Tombstone
	// Deletes forgets keys entirely (instance or tombstone).
	Deletes []Key
	// Clock is the node's clock when the batch was made.
	Clock Stamp
}

// Store persists the plain registrations and tombstones this node owns.
type Store interface {
	// Load returns the stored state.
	Load() (Stored, error)
	// Commit writes the batch in one atomic, durable transaction.
	Commit(Batch) error
}

// EpochStore is a Store that also keeps the last epoch, so that epochs rise
// across restarts even when the clock went backwards in between.
type EpochStore interface {
	LastEpoch() (uint64, error)
	SaveEpoch(uint64) error
}

// ownerSet is what one owner holds: its live instances and its tombstones.
// A key is in at most one of the two.
type ownerSet struct {
	version Version
	inst    map[Key]*Instance
	tombs   map[Key]Stamp
}

func newOwnerSet(v Version) *ownerSet {
	return &ownerSet{version: v, inst: map[Key]*Instance{}, tombs: map[Key]Stamp{}}
}

// local holds what only the owner knows about its own instances.
type localInfo struct {
	deadline time.Time // TTL checks: when the instance turns critical
	expired  bool      // turned critical by its TTL
}

// Registry is the in-memory registry of one node. Its methods are safe for
// concurrent use. Reads (Snapshot, EventsSince) never wait for writes.
type Registry struct {
	cfg   Config
	clock *Clock

	mu     sync.Mutex
	owners map[string]*ownerSet
	view   map[string]map[string]*Instance // service -> id -> winning instance
	local  map[Key]*localInfo
	// sessions indexes the local session instances by their session.
	sessions map[string]map[Key]struct{}
	// drained remembers, until the given time, the session instances that
	// were draining when their session ended (see keepDrain).
	drained *drainMemory
	// lost holds, per session, the keys it lost to newer writes elsewhere.
	lost map[string]*lostQueue
	// tombBorn holds when each of this node's tombstones was made, by this
	// node's clock: they expire TombstoneTTL after that, even when their
	// stamps run ahead of real time (a peer's clock was far ahead once,
	// and every clock that saw its stamps stays ahead).
	tombBorn   map[Key]time.Time
	lastTombGC time.Time
	closed     bool

	snap    atomic.Pointer[Snapshot]
	events  *history[Event]
	deltas  *history[Delta]
	localCh chan struct{} // closed and replaced on every local delta

	persist *persister
	// durable and pending: with a Store, peers only get this node's
	// changes once they are on disk (durable.go).
	durable *ownerSet
	pending []pendingDelta
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New fills cfg's zero fields from DefaultConfig, validates it, creates a
// registry, reloads the stored registrations under the new epoch and starts
// its TTL loop. Close stops it.
func New(cfg Config) (*Registry, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
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
		clock:    NewClock(cfg.Now),
		owners:   map[string]*ownerSet{cfg.Node: newOwnerSet(Version{Epoch: cfg.Epoch})},
		view:     map[string]map[string]*Instance{},
		local:    map[Key]*localInfo{},
		sessions: map[string]map[Key]struct{}{},
		drained:  newDrainMemory(maxDrained),
		lost:     map[string]*lostQueue{},
		tombBorn: map[Key]time.Time{},
		events:   newHistory[Event](cfg.History).withBytes(cfg.HistoryBytes, func(e Event) int { return e.Instance.approxSize() }),
		deltas:   newHistory[Delta](cfg.DeltaLog).withBytes(cfg.HistoryBytes, func(d Delta) int { return d.Instance.approxSize() }),
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
		if err := r.loadStored(stored); err != nil {
			return nil, err
		}
		r.durable = r.owners[cfg.Node].clone()
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
