package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// stormResult is what testenv/internal/stormload prints.
type stormResult struct {
	Registered               int     `json:"registered"`
	Failed                   int     `json:"failed"`
	FirstError               string  `json:"first_error"`
	RegisterSeconds          float64 `json:"register_seconds"`
	RatePerSecond            float64 `json:"rate_per_second"`
	NodesConvergedSeconds    float64 `json:"nodes_converged_after_last_call_seconds"`
	WatchersConvergedSeconds float64 `json:"watchers_converged_after_last_call_seconds"`
	WatchersReadySeconds     float64 `json:"watchers_ready_seconds"`
}

// Scenario 6, the meltdown of the source articles: 10,000 registrations in
// about 5s to a 3-node cluster while 500 watchers stream. No registration
// fails, every node keeps answering DNS, and everything converges.
//
// The load (registrations and watchers) runs in its own process,
// testenv/internal/stormload, built without the race detector, so that
// `go test -race` does not slow it down; this test watches DNS meanwhile.
func TestStorm(t *testing.T) {
	const (
		nodes    = 3
		total    = 10000
		services = 100
	)
	c := Start(t, Options{Nodes: nodes})
	load := buildPackage(t, "./testenv/internal/stormload")

	// DNS keeps answering throughout: every node, every 50ms, over UDP.
	stopMon := make(chan struct{})
	var dnsSent, dnsFailed, dnsWorst atomic.Int64
	var monWG sync.WaitGroup
	for i := range nodes {
		monWG.Add(1)
		go func() {
			defer monWG.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range 100000 { // bounded; stopMon ends it long before
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
	stopMonitor := sync.OnceFunc(func() { close(stopMon); monWG.Wait() })
	t.Cleanup(stopMonitor)

	var addrs []string
	for _, n := range c.Nodes() {
		addrs = append(addrs, n.GRPCAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, load, "-addrs", strings.Join(addrs, ","),
		"-total", strconv.Itoa(total), "-services", strconv.Itoa(services),
		"-watchers", "500", "-watch-clients", "10", "-workers", "48", "-duration", "5s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	stopMonitor()
	if err != nil {
		t.Fatalf("stormload: %v\n%s", err, stderr.String())
	}
	var r stormResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("stormload output %q: %v", out, err)
	}
	Figure(t, "storm_watchers_ready_seconds", r.WatchersReadySeconds)
	Figure(t, "storm_register_seconds", r.RegisterSeconds)
	Figure(t, "storm_rate_per_second", r.RatePerSecond)
	Figure(t, "storm_failed_registrations", r.Failed)
	Figure(t, "storm_nodes_converged_after_last_call_seconds", r.NodesConvergedSeconds)
	Figure(t, "storm_watchers_converged_after_last_call_seconds", r.WatchersConvergedSeconds)
	Figure(t, "storm_dns_queries", dnsSent.Load())
	Figure(t, "storm_dns_failed", dnsFailed.Load())
	Figure(t, "storm_dns_worst_latency_ms", float64(dnsWorst.Load())/1e6)
	if r.Failed > 0 {
		t.Errorf("%d registrations failed, e.g. %s", r.Failed, r.FirstError)
	}
	if n := dnsFailed.Load(); n > 0 {
		t.Errorf("%d of %d DNS queries during the storm got no answer", n, dnsSent.Load())
	}
	// Every node's DNS holds exactly the 10,000 (checked over TCP).
	want := newModel()
	for k := range total {
		want.add(fmt.Sprintf("storm-%02d", k%services), fmt.Sprintf("i-%05d", k), addrN(k))
	}
	if err := converged(c, allNodes(nodes), nil, want); err != nil {
		t.Error(err)
	}
	for i := range nodes {
		if rss, err := c.PeakRSS(i); err != nil {
			t.Error(err)
		} else {
			Figure(t, "storm_peak_rss_mib_"+c.Node(i).Name, float64(rss)/(1<<20))
		}
	}
}
