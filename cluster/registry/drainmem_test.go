package registry

import (
	"fmt"
	"testing"
	"time"
)

// TestDrainMemoryBounded: the drain memory holds at most maxDrained keys and
// forgets the oldest first; one ended session has at most
// maxDrainedPerSession of its drains remembered, its most recent ones; and
// the registry keeps the drains of the latest sessions when older ones fill
// the memory (it used to drop the new ones).
func TestDrainMemoryBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	until := now.Add(time.Minute)

	m := newDrainMemory(100)
	for i := range 250 {
		m.remember(Key{"api", fmt.Sprintf("k%03d", i)}, until)
		if m.len() > 100 {
			t.Fatalf("after %d: %d remembered, bound 100", i+1, m.len())
		}
	}
	if m.take(Key{"api", "k149"}, now) {
		t.Fatal("k149, among the 150 oldest, is still remembered")
	}
	if !m.take(Key{"api", "k150"}, now) || !m.take(Key{"api", "k249"}, now) {
		t.Fatal("the 100 newest are not all remembered")
	}
	if len(m.order) > 2*m.len()+64 {
		t.Fatalf("the order holds %d entries for %d keys", len(m.order), m.len())
	}

	// One session that ends with more drains than its share.
	m = newDrainMemory(maxDrained)
	var draining []*Instance
	for i := range maxDrainedPerSession + 500 {
		in := inst("api", fmt.Sprintf("s%05d", i), "10.0.0.1")
		in.Stamp = Stamp(i + 1)
		draining = append(draining, in)
	}
	m.rememberSession(draining, until)
	if m.len() != maxDrainedPerSession {
		t.Fatalf("one session: %d remembered, bound %d", m.len(), maxDrainedPerSession)
	}
	if m.take(Key{"api", "s00499"}, now) || !m.take(Key{"api", "s00500"}, now) {
		t.Fatal("one session: not its most recent drains that are remembered")
	}

	// Through the registry: sessions of old drains fill the memory, and a
	// client whose session ends last still gets its drain back.
	clk := &fakeClock{now: now}
	r := newReg(t, "n1", func(c *Config) { c.Now = clk.Now; c.DrainMemory = time.Minute; c.MaxInstances = 2 * maxDrained })
	sess := func(id, session string) *Instance {
		in := inst("api", id, "10.0.0.1")
		in.Check = Check{Kind: CheckSession, Session: session}
		return in
	}
	for s := range maxDrained/maxDrainedPerSession + 1 {
		name := fmt.Sprintf("old%d", s)
		for i := range maxDrainedPerSession {
			id := fmt.Sprintf("%s-%d", name, i)
			mustRegister(t, r, sess(id, name))
			mustSetStatus(t, r, "api", id, StatusDraining)
		}
		r.RemoveSession(name)
	}
	mustRegister(t, r, sess("last", "s-last"))
	mustSetStatus(t, r, "api", "last", StatusDraining)
	r.RemoveSession("s-last")
	if n := r.drained.len(); n > maxDrained {
		t.Fatalf("%d drains remembered, bound %d", n, maxDrained)
	}
	mustRegister(t, r, sess("last", "s-again"))
	if in := r.Snapshot().Service("api").Instance("last"); in.Status != StatusDraining {
		t.Fatalf("the newest drain was not remembered: %s", in.Status)
	}
	mustRegister(t, r, sess("old0-0", "s-old"))
	if in := r.Snapshot().Service("api").Instance("old0-0"); in.Status != StatusPassing {
		t.Fatalf("the oldest drain was not forgotten: %s", in.Status)
	}
}
