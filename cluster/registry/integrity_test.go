package registry

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A shutdown drain is not a write: it is not persisted, and the restart
// serves the stored instance again at its stored stamp. So it must not
// outrank a concurrent write of the key through another node. Were it to
// carry a new stamp, that write's node would drop its copy on learning of
// the drain, and after the drained node's leave and restart its older
// stored copy would be the only one left: the acknowledged write is lost.
func TestShutdownDrainDoesNotOutrankConcurrentWrites(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	st := &memStore{data: map[Key]*Instance{}}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now; c.Store = st; c.Epoch = 1 })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now })
	first := mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	replicate(t, a, b, 0)
	clk.Add(time.Millisecond)
	// b takes x over; a has not heard of it yet when it shuts down.
	second := mustRegister(t, b, inst("api", "x", "10.0.0.2"))
	clk.Add(time.Millisecond)
	if n := a.DrainForShutdown(); n != 1 {
		t.Fatalf("drained %d", n)
	}
	// The two deltas cross.
	replicate(t, a, b, 1)
	replicate(t, b, a, 0)
	// a leaves: peers reap it. It restarts from its data dir.
	a.Close()
	b.RemoveOwner("a")
	a2 := newReg(t, "a", func(c *Config) { c.Now = clk.Now; c.Store = st; c.Epoch = 2 })
	own, _ := a2.OwnerState("a")
	b.ReplaceOwner(own)
	bst, _ := b.OwnerState("b")
	a2.ReplaceOwner(bst)
	for _, r := range []*Registry{a2, b} {
		svc := r.Snapshot().Service("api")
		if svc == nil || svc.Len() != 1 {
			t.Fatalf("%s: %+v", r.NodeName(), svc)
		}
		if got := svc.List()[0]; got.Address.String() != "10.0.0.2" || got.Stamp != second.Stamp {
			t.Errorf("%s serves %s stamp %v owned by %s; the acknowledged write through b (stamp %v, after a's %v) is lost",
				r.NodeName(), got.Address, got.Stamp, got.Owner, second.Stamp, first.Stamp)
		}
	}
}

// A deregistration's tombstone must keep hiding the older copies that are
// still travelling even after a newer registration of the key ends without
// a tombstone (a session or TTL instance). Here a holds an old copy of x
// and is cut off; b deregisters x, c registers it on a session, and the
// session ends. If b dropped its tombstone when c's newer registration
// arrived, nothing would hide a's old copy any more: b and c serve it at
// once, and after the heal every node does.
func TestTombstoneOutlivesANewerSessionRegistration(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now })
	c := newReg(t, "c", func(c *Config) { c.Now = clk.Now })
	mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	replicate(t, a, b, 0)
	replicate(t, a, c, 0)
	// a is cut off from here on.
	clk.Add(time.Millisecond)
	mustDeregister(t, b, Key{"api", "x"})
	replicate(t, b, c, 0)
	clk.Add(time.Millisecond)
	sess := inst("api", "x", "10.0.0.3")
	sess.Check = Check{Kind: CheckSession, Session: "s1"}
	if _, err := c.Register(ctx, sess); err != nil {
		t.Fatal(err)
	}
	replicate(t, c, b, 0)
	c.RemoveSession("s1")
	replicate(t, c, b, 1)
	replicate(t, b, c, 1)
	// Heal: a's stream reaches b and c (nothing new), and b's reaches a.
	ds, _ := b.LocalDeltasSince(0, 0)
	a.Apply(ds)
	cst, _ := c.OwnerState("c")
	a.ReplaceOwner(cst)
	for _, r := range []*Registry{a, b, c} {
		if svc := r.Snapshot().Service("api"); svc != nil {
			t.Errorf("%s serves %s owned by %s (stamp %v): the deregistered copy came back", r.NodeName(), svc.List()[0].Address, svc.List()[0].Owner, svc.List()[0].Stamp)
		}
	}
}

// A stamp at the top of the range from a peer (a bug or a hostile peer:
// the peer service is not authenticated) must not make the clock wrap
// around: a stamp of 0 loses to every copy and tombstone of its key, so the
// next acknowledged write would lose at once, and the clock would go
// backwards.
func TestClockNeverWrapsOnAPeersHugeStamp(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	before := mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	evil := Delta{Owner: "evil", Version: Version{Epoch: 1, Seq: 1}, Op: OpRemove,
		Instance: &Instance{Service: "api", ID: "other", Owner: "evil"}, Stamp: ^Stamp(0)}
	if gaps := a.Apply([]Delta{evil}); len(gaps) != 0 {
		t.Fatal(gaps)
	}
	got := mustRegister(t, a, inst("api", "y", "10.0.0.2"))
	if got.Stamp < before.Stamp {
		t.Fatalf("stamp after a peer's huge stamp %v, below the earlier %v: the clock wrapped", got.Stamp, before.Stamp)
	}
}

// A write that is not durable on its owner yet is replicated at once, and
// its effect on other owners is durable there: the old owner of the key
// drops, and deletes from disk, its acknowledged copy. If the new owner
// then restarts without the write (its disk was full; or kill -9 inside
// the fsync), the key is gone everywhere: the acknowledged write is lost
// although the only write above it was never acknowledged.
func TestUnacknowledgedTakeoverDoesNotDestroyAnAcknowledgedWrite(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	ast := &memStore{data: map[Key]*Instance{}}
	bst := &memStore{data: map[Key]*Instance{}}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now; c.Store = ast; c.Epoch = 1 })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now; c.Store = bst; c.Epoch = 1 })
	acked := mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	replicate(t, a, b, 0)
	clk.Add(time.Millisecond)
	bst.mu.Lock()
	bst.fail = errors.New("no space left on device")
	bst.mu.Unlock()
	if _, err := b.Register(ctx, inst("api", "x", "10.0.0.2")); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("register on b with a full disk = %v", err)
	}
	// b's stream carries the write to a at once.
	replicate(t, b, a, 0)
	// b restarts without it (SIGTERM while the disk is still full): peers
	// install its new epoch.
	b.Close()
	b2 := newReg(t, "b", func(c *Config) { c.Now = clk.Now; c.Store = bst; c.Epoch = 2 })
	own, _ := b2.OwnerState("b")
	a.ReplaceOwner(own)
	ast2, _ := a.OwnerState("a")
	b2.ReplaceOwner(ast2)
	for _, r := range []*Registry{a, b2} {
		svc := r.Snapshot().Service("api")
		if svc == nil {
			t.Errorf("%s: x is gone; the acknowledged write (stamp %v on a) is lost to a write that was never acknowledged", r.NodeName(), acked.Stamp)
		}
	}
}

// One node with a clock far ahead (a bad RTC at boot, before NTP) pushes
// every clock that sees its stamps ahead for good: the stamps stay ordered,
// but a tombstone stamped afterwards must still expire TombstoneTTL after
// it was made, not once real time reaches its stamp.
func TestTombstonesExpireAfterAPeersFarFutureStamp(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ahead := &fakeClock{now: clk.Now().Add(365 * 24 * time.Hour)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now; c.TombstoneTTL = time.Hour })
	b := newReg(t, "b", func(c *Config) { c.Now = ahead.Now })
	mustRegister(t, b, inst("api", "y", "10.0.0.2"))
	replicate(t, b, a, 0)
	mustRegister(t, a, inst("api", "z", "10.0.0.1"))
	mustDeregister(t, a, Key{"api", "z"})
	clk.Add(2 * time.Hour)
	a.expireTTLs()
	if st, _ := a.OwnerState("a"); len(st.Tombstones) != 0 {
		t.Fatalf("a's tombstone (stamp %v) outlived its 1h TTL by %v and counting", st.Tombstones[0].Stamp, time.Hour)
	}
}

// A node without a data dir takes its epoch from the clock. Restarted
// (kill -9, restart faster than failure detection, so that peers never
// reap it) with the clock stepped back, its new epoch is below the one its
// peers hold: they refuse its full state and its deltas as old, for good,
// and keep serving the dead incarnation's instances.
func TestRestartWithAClockSteppedBackWithoutADataDir(t *testing.T) {
	t.Skip("open, predates this change (review13): a memory-only node's epoch can go backwards; peers wedge on its old incarnation")
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now })
	mustRegister(t, a, inst("api", "old", "10.0.0.1"))
	replicate(t, a, b, 0)
	a.Close()
	clk.Add(-30 * time.Second)
	a2 := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	mustRegister(t, a2, inst("api", "new", "10.0.0.2"))
	st, _ := a2.OwnerState("a")
	if !b.ReplaceOwner(st) {
		t.Errorf("b refuses a's new incarnation (epoch %d) because it holds epoch %d", a2.Epoch(), a.Epoch())
	}
}

// A deregistration's tombstone belongs to the node it was made through.
// When that node leaves or fails, peers reap its instances but adopt its
// tombstones, so an older copy of the key that a cut-off node still holds
// does not come back on any node, and the cut-off node drops it when it
// heals.
func TestReapOfATombstonesOwnerDoesNotBringBackTheKey(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now })
	c := newReg(t, "c", func(c *Config) { c.Now = clk.Now })
	mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	replicate(t, a, b, 0)
	replicate(t, a, c, 0)
	// a is cut off; x is deregistered through b, which then leaves.
	clk.Add(time.Millisecond)
	mustDeregister(t, b, Key{"api", "x"})
	replicate(t, b, c, 0)
	c.RemoveOwner("b")
	if svc := c.Snapshot().Service("api"); svc != nil {
		t.Fatalf("c serves the deregistered x again (owner %s) once b's set is reaped", svc.List()[0].Owner)
	}
	// c adopted b's tombstone: when a heals, c's deltas reach it, and a
	// drops its old copy too, so that both converge on "absent".
	replicate(t, c, a, 0)
	if svc := a.Snapshot().Service("api"); svc != nil {
		t.Fatalf("a still serves x after healing with c: %+v", svc.List()[0])
	}
	if st, _ := a.OwnerState("a"); len(st.Instances) != 0 {
		t.Fatalf("a kept its old copy: %+v", st.Instances)
	}
}

// With a Store, peers get this node's changes only once they are on disk:
// deltas, full state and digest all wait for the commit, a failed one's
// changes wait for the retry, and changes that need no disk (session
// instances) wait behind them in order.
func TestPeersGetOnlyDurableChanges(t *testing.T) {
	ctx := context.Background()
	st := &memStore{data: map[Key]*Instance{}}
	r := newReg(t, "a", func(c *Config) { c.Store = st; c.Epoch = 1 })
	mustRegister(t, r, inst("api", "x", "10.0.0.1"))
	if ds, _ := r.LocalDeltasSince(0, 0); len(ds) != 1 {
		t.Fatalf("deltas after a durable write: %d", len(ds))
	}
	st.mu.Lock()
	st.fail = errors.New("no space left on device")
	st.mu.Unlock()
	if _, err := r.Register(ctx, inst("api", "y", "10.0.0.2")); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("register with a full disk = %v", err)
	}
	sess := inst("api", "s", "10.0.0.3")
	sess.Check = Check{Kind: CheckSession, Session: "s1"}
	mustRegister(t, r, sess) // needs no disk, but comes after y
	ds, _ := r.LocalDeltasSince(1, 0)
	own, _ := r.OwnerState("a")
	if len(ds) != 0 || len(own.Instances) != 1 || r.Digest()["a"] != r.LocalVersion() || r.LocalVersion().Seq != 1 {
		t.Fatalf("peers would get %d deltas, %d instances, version %s while y is not on disk", len(ds), len(own.Instances), r.LocalVersion())
	}
	// The local view serves them all the same.
	if svc := r.Snapshot().Service("api"); svc == nil || svc.Len() != 3 {
		t.Fatalf("local view %+v", svc)
	}
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	if _, err := r.Register(ctx, inst("api", "y", "10.0.0.2")); err != nil { // the retry
		t.Fatal(err)
	}
	ds, _ = r.LocalDeltasSince(1, 0)
	own, _ = r.OwnerState("a")
	if len(ds) != 2 || ds[0].Instance.ID != "y" || ds[1].Instance.ID != "s" || len(own.Instances) != 3 {
		t.Fatalf("after the retry: %d deltas, %d instances", len(ds), len(own.Instances))
	}
}
