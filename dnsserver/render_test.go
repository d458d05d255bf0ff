package dnsserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestLargeServiceUpdates: a client churning a large service while it is
// queried. Each change costs the answers what changed (a chunk or two of
// instances), not the service, and every query is answered from the newest
// version. When an update is slow all the same (most of the service
// changed at once), the next waits renderBackoff times
// as long, with the answers of the version before meanwhile.
func TestLargeServiceUpdates(t *testing.T) {
	f := newFixture(t)
	f.many(t, "big", 5000)
	h := newTestHandler(t, f.reg)
	query := func() { ask(t, h, "big.service.herald.", dns.TypeSRV, true, 0) }
	entry := func() *serviceEntry {
		v, _ := h.cache.services.Load("big")
		return v.(*serviceEntry)
	}
	latest := func() *registry.Service { return f.reg.Snapshot().Service("big") }
	fresh := func() bool { query(); return entry().cur.Load().svc == latest() }
	// The first build looks at 5,000 instances, over renderSlowSteps: the
	// next update waits for its backoff.
	query()
	wait.Eventually(t, 5*time.Second, "the first build's backoff to end", func() bool { return time.Now().After(entry().cur.Load().next) })
	b := entry().all
	const churns = 200
	for i := range churns {
		before := b.steps
		f.add(t, "big", fmt.Sprint("churn-", i), "10.200.0.1", uint16(20000+i))
		query()
		if r := entry().cur.Load(); r.svc != latest() {
			t.Fatalf("change %d: the query was answered from revision %d, not the newest", i, r.svc.Rev)
		}
		if steps := b.steps - before; steps > 2*1024 {
			t.Fatalf("change %d to a service of %d instances took %d steps; want those of a chunk or two", i, latest().Len(), steps)
		}
	}

	// Most of the service changes before the next query: that update looks
	// at more than renderSlowSteps instances, so the next one waits.
	for i := range 3000 {
		f.add(t, "big", fmt.Sprint("big-", i), "10.201.0.1", 9000)
	}
	query()
	r := entry().cur.Load()
	if r.svc != latest() || r.next.IsZero() {
		t.Fatalf("after the rebuild: answered from revision %d (newest %d), next update at %v", r.svc.Rev, latest().Rev, r.next)
	}
	f.add(t, "big", "after-rebuild", "10.202.0.1", 9000)
	query()
	if cur := entry().cur.Load(); time.Now().Before(r.next) && cur != r {
		t.Fatalf("updated again %v before the backoff ended", time.Until(r.next))
	}
	wait.Eventually(t, 5*time.Second, "the newest version after the backoff", fresh)
	if time.Now().Before(r.next) {
		t.Fatalf("updated %v before the backoff ended", time.Until(r.next))
	}
}
