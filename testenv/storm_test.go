package testenv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// stormWatcher follows one service and keeps the size of its last update.
type stormWatcher struct {
	svc  string
	size atomic.Int64
}

// Scenario 6, the meltdown of the source articles: 10,000 registrations in
// about 5s to a 3-node cluster while 500 watchers stream. No registration
// fails, every node keeps answering DNS, and everything converges.
func TestStorm(t *testing.T) {
	const (
		nodes       = 3
		total       = 10000
		services    = 100
		perService  = total / services
		watchers    = 500
		clients     = 10
		workers     = 48
		stormLength = 5 * time.Second
	)
	c := Start(t, Options{Nodes: nodes})

	// 500 watchers over 10 client connections, spread over the nodes.
	ws := make([]*stormWatcher, watchers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); wg.Wait() })
	for k := range clients {
		cl := c.Client([]int{k % nodes})
		for j := range watchers / clients {
			sw := &stormWatcher{svc: fmt.Sprintf("storm-%02d", (k*watchers/clients+j)%services)}
			sw.size.Store(-1)
			ws[k*watchers/clients+j] = sw
			w, err := cl.Watch(ctx, []string{sw.svc})
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range w.Updates() {
					sw.size.Store(int64(len(u.Services[sw.svc])))
				}
			}()
		}
	}
	Eventually(t, 30*time.Second, "all 500 watchers have their first snapshot", func() error {
		for k, sw := range ws {
			if sw.size.Load() < 0 {
				return fmt.Errorf("watcher %d has nothing yet", k)
			}
		}
		return nil
	})

	// DNS keeps answering throughout: every node, every 50ms, over UDP.
	stopMon := make(chan struct{})
	var dnsSent, dnsFailed atomic.Int64
	var dnsWorst atomic.Int64
	var monWG sync.WaitGroup
	for i := range nodes {
		monWG.Add(1)
		go func() {
			defer monWG.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range 100000 {
				select {
				case <-stopMon:
					return
				case <-tick.C:
				}
				qctx, qcancel := context.WithTimeout(context.Background(), time.Second)
				start := time.Now()
				_, err := QueryDNS(qctx, c.Node(i).DNSAddr, "udp", c.Node(i).Name+".node.herald.", dns.TypeA)
				qcancel()
				dnsSent.Add(1)
				if err != nil {
					dnsFailed.Add(1)
				}
				if d := int64(time.Since(start)); d > dnsWorst.Load() {
					dnsWorst.Store(d)
				}
			}
		}()
	}
	monStopped := false
	stopMonitor := func() {
		if !monStopped {
			monStopped = true
			close(stopMon)
			monWG.Wait()
		}
	}
	t.Cleanup(stopMonitor)

	// The storm: paced to 10,000 in stormLength by a shared schedule.
	var failed atomic.Int64
	var firstErr atomic.Value
	var lastReturn atomic.Int64
	interval := stormLength / total
	start := time.Now()
	errs := runParallel(total, workers, func(k int) error {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d) // pacing the load generator, not waiting for a condition
		}
		i := k % nodes
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.API(i).Register(rctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
			Service: fmt.Sprintf("storm-%02d", k%services), Id: fmt.Sprintf("i-%05d", k),
			Address: addrN(k).String(), Port: 9000,
		}})
		rcancel()
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return nil
		}
		now := int64(time.Since(start))
		for {
			old := lastReturn.Load()
			if now <= old || lastReturn.CompareAndSwap(old, now) {
				break
			}
		}
		return nil
	})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	last := time.Duration(lastReturn.Load())
	lastAt := start.Add(last)
	Figure(t, "storm_register_seconds", last.Seconds())
	Figure(t, "storm_rate_per_second", float64(total-int(failed.Load()))/last.Seconds())
	Figure(t, "storm_failed_registrations", failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d registrations failed, e.g. %v", n, firstErr.Load())
	}

	want := newModel()
	for k := range total {
		want.add(fmt.Sprintf("storm-%02d", k%services), fmt.Sprintf("i-%05d", k), addrN(k))
	}
	_, err := pollFast(60*time.Second, func() error {
		for i := range nodes {
			lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := c.API(i).ListServices(lctx, &heraldpb.ListServicesRequest{})
			lcancel()
			if err != nil {
				return err
			}
			n := 0
			for _, s := range resp.GetServices() {
				n += int(s.GetInstances())
			}
			if n != total {
				return fmt.Errorf("%s holds %d instances, want %d", c.Node(i).Name, n, total)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the nodes did not converge: %v", err)
	}
	Figure(t, "storm_nodes_converged_after_last_call_seconds", time.Since(lastAt).Seconds())
	_, err = pollFast(60*time.Second, func() error {
		for k, sw := range ws {
			if n := sw.size.Load(); n != perService {
				return fmt.Errorf("watcher %d (%s) holds %d, want %d", k, sw.svc, n, perService)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the watchers did not converge: %v", err)
	}
	Figure(t, "storm_watchers_converged_after_last_call_seconds", time.Since(lastAt).Seconds())
	stopMonitor()
	Figure(t, "storm_dns_queries", dnsSent.Load())
	Figure(t, "storm_dns_failed", dnsFailed.Load())
	Figure(t, "storm_dns_worst_latency_ms", float64(dnsWorst.Load())/1e6)
	if n := dnsFailed.Load(); n > 0 {
		t.Errorf("%d of %d DNS queries during the storm got no answer", n, dnsSent.Load())
	}
	// Every node's DNS holds exactly the 10,000 (checked over TCP).
	if err := converged(c, allNodes(nodes), nil, want); err != nil {
		t.Error(err)
	}
	for i := range nodes {
		if rss, err := c.PeakRSS(i); err != nil {
			t.Error(err)
		} else {
			Figure(t, fmt.Sprintf("storm_peak_rss_mib_%s", c.Node(i).Name), float64(rss)/(1<<20))
		}
	}
}
