package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newReg(t *testing.T, node string, mod ...func(*Config)) *Registry {
	t.Helper()
	cfg := Config{Node: node, CheckInterval: time.Hour}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// mustRegister, mustDeregister and mustSetStatus are the setup writes of
// tests: any error fails the test.
func mustRegister(t testing.TB, r *Registry, in *Instance) *Instance {
	t.Helper()
	got, err := r.Register(context.Background(), in)
	if err != nil {
		t.Fatalf("register %s on %s: %v", in.Key(), r.NodeName(), err)
	}
	return got
}

func mustDeregister(t testing.TB, r *Registry, k Key) Stamp {
	t.Helper()
	st, err := r.Deregister(context.Background(), k)
	if err != nil {
		t.Fatalf("deregister %s on %s: %v", k, r.NodeName(), err)
	}
	return st
}

func mustSetStatus(t testing.TB, r *Registry, service, id string, st Status) int {
	t.Helper()
	n, _, err := r.SetStatus(context.Background(), service, id, st)
	if err != nil {
		t.Fatalf("set %s/%s %s on %s: %v", service, id, st, r.NodeName(), err)
	}
	return n
}

func inst(svc, id, addr string) *Instance {
	return &Instance{Service: svc, ID: id, Address: netip.MustParseAddr(addr), Port: 80, Weight: 1}
}

func ids(s *Service) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, in := range s.List() {
		out = append(out, in.ID+"="+in.Status.String())
	}
	return out
}

func TestRegisterUpdateDeregister(t *testing.T) {
	ctx := context.Background()
	r := newReg(t, "n1")
	s0 := r.Snapshot()
	got, err := r.Register(ctx, inst("API", "a1", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "n1" || got.Service != "api" {
		t.Fatalf("stored %+v", got)
	}
	select {
	case <-s0.Changed():
	default:
		t.Fatal("old snapshot not marked changed")
	}
	s1 := r.Snapshot()
	if s1.Revision() != 1 || fmt.Sprint(ids(s1.Service("api"))) != "[a1=passing]" {
		t.Fatalf("rev %d, service %v", s1.Revision(), ids(s1.Service("api")))
	}
	// Idempotent: the same registration changes nothing.
	if _, err := r.Register(ctx, inst("api", "a1", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if r.Snapshot() != s1 || r.LocalVersion().Seq != 1 {
		t.Fatalf("idempotent register published a change: seq %d", r.LocalVersion().Seq)
	}
	// Update in place.
	if _, err := r.Register(ctx, inst("api", "a1", "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	s2 := r.Snapshot()
	if n := len(s2.Service("api").List()); n != 1 || s2.Service("api").List()[0].Address.String() != "10.0.0.2" {
		t.Fatalf("update: %d instances", n)
	}
	if s1.Service("api").List()[0].Address.String() != "10.0.0.1" {
		t.Fatal("old snapshot was mutated")
	}
	if _, err := r.Deregister(ctx, Key{"api", "a1"}); err != nil {
		t.Fatal(err)
	}
	if r.Snapshot().Service("api") != nil {
		t.Fatal("service still present after its last instance left")
	}
	var nf *NotFoundError
	if _, err := r.Deregister(ctx, Key{"api", "a1"}); !errors.As(err, &nf) || nf.Key.ID != "a1" {
		t.Fatalf("second deregister = %v, want NotFoundError naming a1", err)
	}
	evs, err := r.EventsSince(0, 0)
	if err != nil || len(evs) != 3 || evs[2].Op != OpRemove || evs[2].Rev != 3 {
		t.Fatalf("events = %+v, %v", evs, err)
	}
}

func TestSetStatus(t *testing.T) {
	ctx := context.Background()
	r := newReg(t, "n1")
	for i := range 3 {
		mustRegister(t, r, inst("api", fmt.Sprint("a", i), "10.0.0.1"))
	}
	mustRegister(t, r, inst("web", "w0", "10.0.0.1"))
	if n, _, err := r.SetStatus(ctx, "api", "a1", StatusDraining); n != 1 || err != nil {
		t.Fatalf("drain one = %d, %v", n, err)
	}
	if fmt.Sprint(ids(r.Snapshot().Service("api"))) != "[a0=passing a1=draining a2=passing]" {
		t.Fatal(ids(r.Snapshot().Service("api")))
	}
	if n, _, err := r.SetStatus(ctx, "", "", StatusDraining); n != 4 || err != nil {
		t.Fatalf("drain node = %d, %v", n, err)
	}
	if n, _, _ := r.SetStatus(ctx, "api", "", StatusPassing); n != 3 {
		t.Fatalf("undrain service matched %d", n)
	}
	if fmt.Sprint(ids(r.Snapshot().Service("web"))) != "[w0=draining]" {
		t.Fatal(ids(r.Snapshot().Service("web")))
	}
	if _, _, err := r.SetStatus(ctx, "nope", "", StatusDraining); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown service: %v", err)
	}
	if _, _, err := r.SetStatus(ctx, "api", "", StatusUnknown); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
}

func TestTTLCheck(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := newReg(t, "n1", func(c *Config) { c.Now = clk.Now })
	in := inst("api", "t1", "10.0.0.1")
	in.Check = Check{Kind: CheckTTL, TTL: 10 * time.Second}
	if _, err := r.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	status := func() string { return fmt.Sprint(ids(r.Snapshot().Service("api"))) }
	clk.Add(9 * time.Second)
	r.expireTTLs()
	if status() != "[t1=passing]" {
		t.Fatal("expired early:", status())
	}
	if err := r.Heartbeat(ctx, Key{"api", "t1"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(9 * time.Second)
	r.expireTTLs()
	if status() != "[t1=passing]" {
		t.Fatal("heartbeat did not renew:", status())
	}
	clk.Add(2 * time.Second)
	r.expireTTLs()
	if status() != "[t1=critical]" {
		t.Fatal("not critical after TTL:", status())
	}
	// A heartbeat brings it back.
	r.Heartbeat(ctx, Key{"api", "t1"})
	if status() != "[t1=passing]" {
		t.Fatal("heartbeat did not restore:", status())
	}
	clk.Add(11 * time.Second) // 1s past the deadline: critical, removal due 9s later
	r.expireTTLs()
	clk.Add(8 * time.Second)
	r.expireTTLs()
	if status() != "[t1=critical]" {
		t.Fatal("removed too early:", status())
	}
	clk.Add(2 * time.Second)
	r.expireTTLs()
	if status() != "[]" {
		t.Fatal("not removed after a second TTL:", status())
	}
	// A status change never renews a TTL: undrain cannot revive an expired
	// instance, and drain does not extend a live one.
	in2 := inst("api", "t2", "10.0.0.1")
	in2.Check = Check{Kind: CheckTTL, TTL: 10 * time.Second}
	mustRegister(t, r, in2)
	clk.Add(5 * time.Second)
	mustSetStatus(t, r, "api", "t2", StatusDraining)
	clk.Add(6 * time.Second) // 11s after registration
	r.expireTTLs()
	if got := r.Snapshot().Service("api").Instance("t2").Status; got != StatusCritical {
		t.Fatalf("drain extended the TTL: status %s", got)
	}
	mustSetStatus(t, r, "api", "t2", StatusPassing)
	if got := r.Snapshot().Service("api").Instance("t2").Status; got != StatusCritical {
		t.Fatalf("undrain revived an expired TTL instance: status %s", got)
	}
	plain := inst("api", "p1", "10.0.0.1")
	mustRegister(t, r, plain)
	if err := r.Heartbeat(ctx, Key{"api", "p1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("heartbeat on plain instance = %v", err)
	}
}

func TestRemoveSession(t *testing.T) {
	r := newReg(t, "n1")
	for i, sess := range []string{"s1", "s1", "s2"} {
		in := inst("api", fmt.Sprint("a", i), "10.0.0.1")
		in.Check = Check{Kind: CheckSession, Session: sess}
		mustRegister(t, r, in)
	}
	// a1 moves from session s1 to s3: ending s1 must leave it alone.
	moved := inst("api", "a1", "10.0.0.1")
	moved.Check = Check{Kind: CheckSession, Session: "s3"}
	mustRegister(t, r, moved)
	if n := r.RemoveSession("s1"); n != 1 {
		t.Fatalf("removed %d", n)
	}
	if fmt.Sprint(ids(r.Snapshot().Service("api"))) != "[a1=passing a2=passing]" {
		t.Fatal(ids(r.Snapshot().Service("api")))
	}
	if n := r.RemoveSession("s3"); n != 1 {
		t.Fatalf("removed %d", n)
	}
	if len(r.sessions) != 1 {
		t.Fatalf("session index holds %d sessions, want 1", len(r.sessions))
	}
	if fmt.Sprint(ids(r.Snapshot().Service("api"))) != "[a2=passing]" {
		t.Fatal(ids(r.Snapshot().Service("api")))
	}
}

// replicate copies every local delta of src into dst.
func replicate(t *testing.T, src, dst *Registry, after uint64) {
	t.Helper()
	ds, err := src.LocalDeltasSince(after, 0)
	if err != nil {
		t.Fatal(err)
	}
	if gaps := dst.Apply(ds); len(gaps) != 0 {
		t.Fatalf("gaps: %v", gaps)
	}
}

func TestApplyDeltasGapsAndEpochs(t *testing.T) {
	ctx := context.Background()
	a := newReg(t, "a", func(c *Config) { c.Epoch = 10 })
	b := newReg(t, "b")
	for i := range 5 {
		mustRegister(t, a, inst("api", fmt.Sprint("a", i), "10.0.0.1"))
	}
	replicate(t, a, b, 0)
	if got := b.Snapshot().Service("api").Len(); got != 5 {
		t.Fatalf("b holds %d", got)
	}
	// Duplicates are dropped.
	replicate(t, a, b, 2)
	mustDeregister(t, a, Key{"api", "a0"})
	mustDeregister(t, a, Key{"api", "a1"})
	// Deliver only the second: a gap.
	ds, _ := a.LocalDeltasSince(6, 0)
	gaps := b.Apply(ds)
	if len(gaps) != 1 || gaps[0].Owner != "a" || gaps[0].Have.Seq != 5 || gaps[0].Got.Seq != 7 {
		t.Fatalf("gaps = %+v", gaps)
	}
	st, _ := a.OwnerState("a")
	if !b.ReplaceOwner(st) {
		t.Fatal("ReplaceOwner refused newer state")
	}
	if b.ReplaceOwner(st) {
		t.Fatal("ReplaceOwner accepted the same version twice")
	}
	if fmt.Sprint(ids(b.Snapshot().Service("api"))) != fmt.Sprint(ids(a.Snapshot().Service("api"))) {
		t.Fatalf("b %v != a %v", ids(b.Snapshot().Service("api")), ids(a.Snapshot().Service("api")))
	}
	// The owner restarts with a new epoch and one registration: its first
	// delta replaces everything b held for it, leaving no ghosts.
	a2 := newReg(t, "a", func(c *Config) { c.Epoch = 11 })
	a2.Register(ctx, inst("api", "fresh", "10.0.0.9"))
	replicate(t, a2, b, 0)
	if fmt.Sprint(ids(b.Snapshot().Service("api"))) != "[fresh=passing]" {
		t.Fatal("ghosts after restart:", ids(b.Snapshot().Service("api")))
	}
	// Old-epoch deltas are ignored.
	if gaps := b.Apply([]Delta{{Owner: "a", Version: Version{10, 99}, Op: OpUpsert, Instance: inst("api", "old", "10.0.0.1")}}); len(gaps) != 0 {
		t.Fatal(gaps)
	}
	if b.Snapshot().Service("api").Instance("old") != nil {
		t.Fatal("old epoch delta applied")
	}
	// A new epoch that starts mid-way is a gap.
	if gaps := b.Apply([]Delta{{Owner: "a", Version: Version{12, 3}, Op: OpUpsert, Instance: inst("api", "x", "10.0.0.1")}}); len(gaps) != 1 {
		t.Fatal("expected a gap for a new epoch at seq 3")
	}
	if n := b.RemoveOwner("a"); n != 1 || b.Snapshot().Service("api") != nil {
		t.Fatalf("RemoveOwner removed %d", n)
	}
	if d := b.Digest(); len(d) != 1 {
		t.Fatalf("digest after reap: %v", d)
	}
}

func TestReplaceOwnerEmitsOnlyChanges(t *testing.T) {
	a := newReg(t, "a")
	b := newReg(t, "b")
	for i := range 100 {
		mustRegister(t, a, inst("api", fmt.Sprint("a", i), "10.0.0.1"))
	}
	st, _ := a.OwnerState("a")
	b.ReplaceOwner(st)
	rev := b.Snapshot().Revision()
	mustDeregister(t, a, Key{"api", "a7"})
	st, _ = a.OwnerState("a")
	// Same content, fresh pointers, as after a pull over the network.
	for i, in := range st.Instances {
		st.Instances[i] = in.Clone()
	}
	if !b.ReplaceOwner(st) {
		t.Fatal("newer state refused")
	}
	evs, err := b.EventsSince(rev, 0)
	if err != nil || len(evs) != 1 || evs[0].Op != OpRemove || evs[0].Instance.ID != "a7" {
		t.Fatalf("events after installing a state with one removal: %d %v", len(evs), err)
	}
}

func TestOneLiveRegistrationPerKey(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	// b's clock is 30s behind a's: stamps still order what b saw after a.
	slow := &fakeClock{now: time.Unix(970, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	b := newReg(t, "b", func(c *Config) { c.Now = slow.Now })
	first, err := a.Register(ctx, inst("api", "x", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	replicate(t, a, b, 0)
	// b registers the key after seeing a's copy: b takes it over.
	second, err := b.Register(ctx, inst("api", "x", "10.0.0.2"))
	if err != nil || second.Stamp <= first.Stamp {
		t.Fatalf("takeover stamp %v <= %v (%v)", second.Stamp, first.Stamp, err)
	}
	replicate(t, b, a, 0)
	for _, r := range []*Registry{a, b} {
		got := r.Snapshot().Service("api").List()
		if len(got) != 1 || got[0].Owner != "b" || got[0].Address.String() != "10.0.0.2" {
			t.Fatalf("%s: winner %+v", r.NodeName(), got[0])
		}
	}
	// a dropped its copy on learning of b's newer one, and says so.
	if st, _ := a.OwnerState("a"); len(st.Instances) != 0 || len(st.Tombstones) != 0 {
		t.Fatalf("a still holds its copy: %+v", st)
	}
	ds, _ := a.LocalDeltasSince(1, 0)
	if len(ds) != 1 || ds[0].Op != OpDrop {
		t.Fatalf("a's deltas after the takeover: %+v", ds)
	}
	// Deregistering on b leaves a tombstone; a's old copy never comes back,
	// even on a node that still holds it (c has only a's first delta).
	c := newReg(t, "c", func(c *Config) { c.Now = clk.Now })
	replicate(t, a, c, 0)
	gone, err := b.Deregister(ctx, Key{"api", "x"})
	if err != nil || gone <= second.Stamp {
		t.Fatalf("deregister stamp %v (%v)", gone, err)
	}
	replicate(t, b, a, 1)
	replicate(t, b, c, 0)
	for _, r := range []*Registry{a, b, c} {
		if svc := r.Snapshot().Service("api"); svc != nil {
			t.Fatalf("%s still serves %+v after the deregistration", r.NodeName(), svc.List()[0])
		}
	}
	// A deregistration through a node that does not own the key takes it
	// over with a tombstone too; an unknown key is not found.
	third, _ := b.Register(ctx, inst("api", "y", "10.0.0.3"))
	replicate(t, b, a, 2)
	stamp, err := a.Deregister(ctx, Key{"api", "y"})
	if err != nil || stamp <= third.Stamp {
		t.Fatalf("deregister through a: %v %v", stamp, err)
	}
	replicate(t, a, b, 1)
	if svc := b.Snapshot().Service("api"); svc != nil {
		t.Fatalf("b still serves y: %+v", svc.List())
	}
	if _, err := a.Deregister(ctx, Key{"api", "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestConcurrentWritesConvergeOnTheHighestStamp(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := newReg(t, "a", func(c *Config) { c.Now = clk.Now })
	b := newReg(t, "b", func(c *Config) { c.Now = clk.Now })
	// Partitioned: both write x without seeing each other. b's is later.
	mustRegister(t, a, inst("api", "x", "10.0.0.1"))
	clk.Add(time.Millisecond)
	mustRegister(t, b, inst("api", "x", "10.0.0.2"))
	clk.Add(time.Millisecond)
	mustDeregister(t, a, Key{"api", "x"}) // a's tombstone is the newest write
	// Heal in either order: both end with x absent, and neither holds a
	// live copy any more.
	replicate(t, a, b, 0)
	replicate(t, b, a, 0)
	for _, r := range []*Registry{a, b} {
		if svc := r.Snapshot().Service("api"); svc != nil {
			t.Fatalf("%s serves %+v", r.NodeName(), svc.List()[0])
		}
	}
	if st, _ := b.OwnerState("b"); len(st.Instances) != 0 {
		t.Fatalf("b kept its losing copy: %+v", st.Instances)
	}
	// A heartbeat still goes only to the owner of a TTL instance.
	ttl := inst("api", "t", "10.0.0.9")
	ttl.Check = Check{Kind: CheckTTL, TTL: time.Minute}
	mustRegister(t, a, ttl)
	replicate(t, a, b, 2)
	var no *NotOwnerError
	if err := b.Heartbeat(ctx, Key{"api", "t"}); !errors.As(err, &no) || no.Owner != "a" {
		t.Fatalf("heartbeat on a foreign instance = %v", err)
	}
	if _, _, err := b.SetStatus(ctx, "api", "t", StatusDraining); !errors.As(err, &no) {
		t.Fatalf("drain of a foreign TTL instance = %v", err)
	}
}

func TestEventsCompaction(t *testing.T) {
	r := newReg(t, "n1", func(c *Config) { c.History = 4; c.DeltaLog = 4 })
	for i := range 10 {
		mustRegister(t, r, inst("api", fmt.Sprint("a", i), "10.0.0.1"))
	}
	if _, err := r.EventsSince(2, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("EventsSince(2) = %v", err)
	}
	evs, err := r.EventsSince(6, 0)
	if err != nil || len(evs) != 4 || evs[0].Rev != 7 {
		t.Fatalf("EventsSince(6) = %v, %v", evs, err)
	}
	if evs, _ := r.EventsSince(6, 2); len(evs) != 2 {
		t.Fatal("max not honoured")
	}
	if evs, err := r.EventsSince(10, 0); err != nil || len(evs) != 0 {
		t.Fatal("EventsSince(current) should be empty")
	}
	if _, err := r.LocalDeltasSince(1, 0); !errors.Is(err, ErrCompacted) {
		t.Fatal("delta log not compacted")
	}
}

func TestLargeServicePatching(t *testing.T) {
	r := newReg(t, "n1")
	for i := range 1000 {
		mustRegister(t, r, inst("big", fmt.Sprintf("i%04d", i), "10.0.0.1"))
	}
	for i := 0; i < 1000; i += 3 {
		mustDeregister(t, r, Key{"big", fmt.Sprintf("i%04d", i)})
	}
	svc := r.Snapshot().Service("big")
	if svc.Len() != 666 {
		t.Fatalf("%d instances", svc.Len())
	}
	for i := 1; i < svc.Len(); i++ {
		if svc.List()[i-1].ID >= svc.List()[i].ID {
			t.Fatal("not sorted at", i)
		}
	}
}

func TestConcurrentReadersNeverBlockWriters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newReg(t, "n1")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.Snapshot()
			for s.Revision() < 500 {
				select {
				case <-s.Changed():
					s = r.Snapshot()
				case <-ctx.Done():
					t.Error("reader timed out")
					return
				}
			}
		}()
	}
	for i := range 500 {
		if _, err := r.Register(ctx, inst("api", fmt.Sprint("a", i), "10.0.0.1")); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// memStore is an in-memory Store for tests.
type memStore struct {
	mu    sync.Mutex
	data  map[Key]*Instance
	tombs map[Key]Stamp
	clock Stamp
	fail  error
}

func (m *memStore) Load() (Stored, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out Stored
	for _, in := range m.data {
		out.Instances = append(out.Instances, in.Clone())
	}
	for k, s := range m.tombs {
		out.Tombstones = append(out.Tombstones, Tombstone{Key: k, Stamp: s})
	}
	out.Clock = m.clock
	return out, nil
}

func (m *memStore) Commit(b Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.tombs == nil {
		m.tombs = map[Key]Stamp{}
	}
	for _, in := range b.Puts {
		m.data[in.Key()] = in.Clone()
		delete(m.tombs, in.Key())
	}
	for _, t := range b.Tombstones {
		m.tombs[t.Key] = t.Stamp
		delete(m.data, t.Key)
	}
	for _, k := range b.Deletes {
		delete(m.data, k)
		delete(m.tombs, k)
	}
	m.clock = max(m.clock, b.Clock)
	return nil
}

func TestPersistence(t *testing.T) {
	ctx := context.Background()
	st := &memStore{data: map[Key]*Instance{}}
	r := newReg(t, "n1", func(c *Config) { c.Store = st; c.Epoch = 1 })
	mustRegister(t, r, inst("api", "plain", "10.0.0.1"))
	mustRegister(t, r, inst("api", "gone", "10.0.0.1"))
	mustDeregister(t, r, Key{"api", "gone"})
	ttl := inst("api", "ttl", "10.0.0.1")
	ttl.Check = Check{Kind: CheckTTL, TTL: time.Minute}
	mustRegister(t, r, ttl)
	mustSetStatus(t, r, "api", "plain", StatusDraining)
	if len(st.data) != 1 || st.data[Key{"api", "plain"}].Status != StatusDraining {
		t.Fatalf("store holds %v", st.data)
	}
	r.Close()
	r2 := newReg(t, "n1", func(c *Config) { c.Store = st; c.Epoch = 2 })
	if got := fmt.Sprint(ids(r2.Snapshot().Service("api"))); got != "[plain=draining]" {
		t.Fatal("reloaded:", got)
	}
	if v := r2.LocalVersion(); v.Epoch != 2 || v.Seq != 1 {
		t.Fatalf("reloaded version %v", v)
	}
	if n := r2.DrainForShutdown(); n != 0 {
		t.Fatalf("drained %d already-draining instances", n)
	}
	mustSetStatus(t, r2, "api", "plain", StatusPassing)
	if n := r2.DrainForShutdown(); n != 1 || st.data[Key{"api", "plain"}].Status != StatusPassing {
		t.Fatalf("DrainForShutdown drained %d and persisted %s", n, st.data[Key{"api", "plain"}].Status)
	}
	st.fail = errors.New("disk full")
	if _, err := r2.Register(ctx, inst("api", "p2", "10.0.0.1")); err == nil {
		t.Fatal("a failed commit must be reported")
	}
}

func TestSessionReRegistrationKeepsDrain(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := newReg(t, "n1", func(c *Config) { c.Now = clk.Now; c.DrainMemory = 30 * time.Second })
	sess := func(id, session string) *Instance {
		in := inst("api", id, "10.0.0.1")
		in.Check = Check{Kind: CheckSession, Session: session}
		return in
	}
	status := func(id string) Status {
		if in := r.Snapshot().Service("api").Instance(id); in != nil {
			return in.Status
		}
		return StatusUnknown
	}
	// An operator drains; the client's session breaks and it registers
	// again as passing on a new session: the drain stays.
	mustRegister(t, r, sess("a1", "s1"))
	mustSetStatus(t, r, "api", "a1", StatusDraining)
	r.RemoveSession("s1")
	mustRegister(t, r, sess("a1", "s2"))
	if st := status("a1"); st != StatusDraining {
		t.Fatalf("after reconnect: %s, want draining", st)
	}
	// Reconnected before the old session ended: the drain stays too.
	mustRegister(t, r, sess("a1", "s3"))
	if st := status("a1"); st != StatusDraining {
		t.Fatalf("re-registered on a new session: %s, want draining", st)
	}
	// An undrain lifts it, and a later reconnect keeps it passing.
	mustSetStatus(t, r, "api", "a1", StatusPassing)
	r.RemoveSession("s3")
	mustRegister(t, r, sess("a1", "s4"))
	if st := status("a1"); st != StatusPassing {
		t.Fatalf("after undrain and reconnect: %s, want passing", st)
	}
	// The memory fades: a drained instance whose session ended more than
	// DrainMemory ago comes back passing.
	mustSetStatus(t, r, "api", "a1", StatusDraining)
	r.RemoveSession("s4")
	clk.Add(31 * time.Second)
	r.expireTTLs()
	mustRegister(t, r, sess("a1", "s5"))
	if st := status("a1"); st != StatusPassing {
		t.Fatalf("after DrainMemory: %s, want passing", st)
	}
	// A deregistration forgets it at once; plain registrations are the
	// source of truth and are never kept drained.
	mustSetStatus(t, r, "api", "a1", StatusDraining)
	mustDeregister(t, r, Key{"api", "a1"})
	mustRegister(t, r, sess("a1", "s6"))
	if st := status("a1"); st != StatusPassing {
		t.Fatalf("after deregister: %s, want passing", st)
	}
	mustRegister(t, r, inst("api", "p1", "10.0.0.1"))
	mustSetStatus(t, r, "api", "p1", StatusDraining)
	mustRegister(t, r, inst("api", "p1", "10.0.0.1"))
	if st := status("p1"); st != StatusPassing {
		t.Fatalf("plain re-registration: %s, want passing", st)
	}
}

func TestAcknowledgedMeansDurable(t *testing.T) {
	ctx := context.Background()
	st := &memStore{data: map[Key]*Instance{}, fail: errors.New("no space left on device")}
	r := newReg(t, "n1", func(c *Config) { c.Store = st })
	// Every retry of the same write reports the failure until it succeeds,
	// even though the first attempt already changed memory.
	for range 3 {
		if _, err := r.Register(ctx, inst("api", "a1", "10.0.0.1")); !errors.Is(err, ErrNotDurable) || !strings.Contains(err.Error(), "no space") {
			t.Fatalf("register while the store fails = %v", err)
		}
	}
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	in, err := r.Register(ctx, inst("api", "a1", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	got := st.data[Key{"api", "a1"}]
	st.mu.Unlock()
	if got == nil || got.Stamp != in.Stamp {
		t.Fatalf("stored %+v, acknowledged stamp %v", got, in.Stamp)
	}
	// The same for status changes and deregistrations: a retry of a write
	// that is only in memory fails again, not "nothing to do" or NotFound.
	setFail := func(err error) { st.mu.Lock(); st.fail = err; st.mu.Unlock() }
	setFail(errors.New("no space left on device"))
	for range 2 {
		if _, _, err := r.SetStatus(ctx, "api", "a1", StatusDraining); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("drain while the store fails = %v", err)
		}
	}
	for range 2 {
		if _, err := r.Deregister(ctx, Key{"api", "a1"}); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("deregister while the store fails = %v", err)
		}
	}
	setFail(nil)
	tomb, err := r.Deregister(ctx, Key{"api", "a1"})
	if err != nil || tomb == 0 {
		t.Fatalf("deregister retry after the disk recovered = %v, %v", tomb, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.data[Key{"api", "a1"}] != nil || st.tombs[Key{"api", "a1"}] != tomb {
		t.Fatalf("store after the deregistration: %+v %+v", st.data, st.tombs)
	}
	if _, err := r.Deregister(ctx, Key{"api", "a1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregister once durable = %v, want not found", err)
	}
}

func TestRestartKeepsTombstonesAndNeverIssuesLowerStamps(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	st := &memStore{data: map[Key]*Instance{}}
	r := newReg(t, "n1", func(c *Config) { c.Store = st; c.Now = clk.Now })
	kept, _ := r.Register(ctx, inst("api", "kept", "10.0.0.1"))
	mustRegister(t, r, inst("api", "gone", "10.0.0.1"))
	tomb, err := r.Deregister(ctx, Key{"api", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// The clock steps back 30s before the restart.
	clk.Add(-30 * time.Second)
	r2 := newReg(t, "n1", func(c *Config) { c.Store = st; c.Now = clk.Now })
	own, _ := r2.OwnerState("n1")
	if len(own.Instances) != 1 || own.Instances[0].Stamp != kept.Stamp || len(own.Tombstones) != 1 || own.Tombstones[0].Stamp != tomb {
		t.Fatalf("reloaded %+v", own)
	}
	next, err := r2.Register(ctx, inst("api", "new", "10.0.0.1"))
	if err != nil || next.Stamp <= tomb {
		t.Fatalf("stamp after restart %v <= %v (%v)", next.Stamp, tomb, err)
	}
	// A peer holding the old copy of "gone" learns of the tombstone.
	peer := newReg(t, "n2", func(c *Config) { c.Now = clk.Now })
	peer.ReplaceOwner(own)
	if svc := peer.Snapshot().Service("api"); svc == nil || svc.Instance("gone") != nil || svc.Instance("kept") == nil {
		t.Fatalf("peer view %+v", svc)
	}
}

func TestTombstonesExpire(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := newReg(t, "n1", func(c *Config) { c.Now = clk.Now; c.TombstoneTTL = time.Minute })
	mustRegister(t, r, inst("api", "a", "10.0.0.1"))
	mustDeregister(t, r, Key{"api", "a"})
	r.expireTTLs()
	if st, _ := r.OwnerState("n1"); len(st.Tombstones) != 1 {
		t.Fatalf("tombstone gone early: %+v", st)
	}
	clk.Add(2 * time.Minute)
	r.expireTTLs()
	if st, _ := r.OwnerState("n1"); len(st.Tombstones) != 0 {
		t.Fatalf("tombstone kept past its TTL: %+v", st)
	}
	// Churn through unique keys keeps at most MaxTombstones, the newest.
	r2 := newReg(t, "n2", func(c *Config) { c.Now = clk.Now; c.MaxTombstones = 10 })
	for i := range 25 {
		k := fmt.Sprint("c", i)
		mustRegister(t, r2, inst("api", k, "10.0.0.1"))
		mustDeregister(t, r2, Key{"api", k})
	}
	clk.Add(2 * time.Second)
	r2.expireTTLs()
	st, _ := r2.OwnerState("n2")
	if len(st.Tombstones) != 10 {
		t.Fatalf("%d tombstones kept, want 10", len(st.Tombstones))
	}
	for _, tb := range st.Tombstones {
		if n, _ := strconv.Atoi(strings.TrimPrefix(tb.Key.ID, "c")); n < 15 {
			t.Fatalf("kept an old tombstone %s", tb.Key)
		}
	}
}
