package dnsserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestRenderBackoff: a client that churns a large service while it is
// queried gets the service rendered a bounded number of times, not once per
// change, and every change still shows within the backoff. A small service
// is rendered for every change it is queried after, so its answers are
// always the newest.
func TestRenderBackoff(t *testing.T) {
	f := newFixture(t)
	f.many(t, "big", 5000) // about 5 ms to render: past renderSlow
	f.many(t, "small", 5)
	h := newTestHandler(t, f.reg)
	tcp := func(name string) int {
		return len(ask(t, h, name, dns.TypeSRV, true, 0).Answer)
	}
	if n := tcp("big.service.herald."); n == 0 {
		t.Fatal("no answer for big")
	}
	before, start := h.cache.renders.Load(), time.Now()
	const churns = 200
	for i := range churns {
		f.add(t, "big", fmt.Sprint("churn-", i), "10.200.0.1", uint16(20000+i))
		tcp("big.service.herald.")
	}
	// Each render took at least renderSlow, so the next waits at least
	// renderBackoff times that.
	limit := uint64(time.Since(start)/(renderBackoff*renderSlow)) + 2
	if got := h.cache.renders.Load() - before; got > limit {
		t.Fatalf("%d changes, each followed by a query, rendered big %d times; want at most %d", churns, got, limit)
	} else {
		t.Logf("%d changes, each followed by a query: big rendered %d times", churns, got)
	}
	// The last change shows once the backoff has passed. (A TCP answer
	// holds only about 1,600 of big's records, so look at what it is
	// answered from.)
	latest := f.reg.Snapshot().Service("big")
	wait.Eventually(t, 5*time.Second, "big's last change to be answered", func() bool {
		tcp("big.service.herald.")
		v, _ := h.cache.services.Load("big")
		return v.(*serviceEntry).cur.Load().svc == latest
	})

	// A small service is answered from its newest version every time.
	for i := range 50 {
		f.add(t, "small", fmt.Sprint("s-", i), "10.9.0.1", uint16(30000+i))
		if got, want := tcp("small.service.herald."), 5+i+1; got != want {
			t.Fatalf("after registering small instance %d: %d SRV records, want %d", i, got, want)
		}
	}
}
