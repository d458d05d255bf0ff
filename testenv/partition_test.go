package testenv

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/testenv/wait"
)

// ownedModel is a model that remembers which node owns each instance.
type ownedModel struct {
	*model
	owner map[string]int // "svc/id" -> node
}

func (m *ownedModel) register(t *testing.T, c *Cluster, node int, svc, id string, n int) {
	t.Helper()
	if err := registerPlain(context.Background(), c, node, svc, id, addrN(n), 9000); err != nil {
		t.Fatal(err)
	}
	m.add(svc, id, addrN(n))
	m.owner[svc+"/"+id] = node
}

func (m *ownedModel) deregister(t *testing.T, c *Cluster, svc, id string) {
	t.Helper()
	if err := deregister(context.Background(), c, m.owner[svc+"/"+id], svc, id); err != nil {
		t.Fatal(err)
	}
	m.remove(svc, id)
	delete(m.owner, svc+"/"+id)
}

// ownedBy returns the part of the model owned by nodes.
func (m *ownedModel) ownedBy(nodes []int) *model {
	out := m.clone()
	for svc, ids := range m.ids() {
		for _, id := range ids {
			if !slices.Contains(nodes, m.owner[svc+"/"+id]) {
				out.remove(svc, id)
			}
		}
	}
	return out
}

// firstOwnedBy returns up to n "svc/id" keys owned by nodes, sorted.
func (m *ownedModel) firstOwnedBy(nodes []int, n int) [][2]string {
	var out [][2]string
	for svc, ids := range m.ids() {
		for _, id := range ids {
			if slices.Contains(nodes, m.owner[svc+"/"+id]) {
				out = append(out, [2]string{svc, id})
			}
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int {
		if a[0] != b[0] {
			return strings.Compare(a[0], b[0])
		}
		return strings.Compare(a[1], b[1])
	})
	return out[:min(n, len(out))]
}

// dnsMonitor queries every listed node's DNS over UDP until stop, and
// counts the queries that got no answer.
func dnsMonitor(c *Cluster, nodes []int, stop <-chan struct{}) (done <-chan [2]int) {
	out := make(chan [2]int, 1)
	go func() {
		var sent, failed, retried int
		defer func() {
			if retried > 0 {
				fmt.Printf("FIGURE partition_dns_udp_retransmissions=%d\n", retried)
			}
		}()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 100000 { // bounded; stop ends it long before
			select {
			case <-stop:
				out <- [2]int{sent, failed}
				return
			case <-tick.C:
			}
			for _, i := range nodes {
				// Like a stub resolver, retransmit once after a lost UDP
				// datagram; a node that does not answer twice has failed.
				var err error
				for try := range 2 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err = QueryDNS(ctx, c.Node(i).DNSAddr, "udp", c.Node(i).Name+".node.herald.", dns.TypeA)
					cancel()
					if err == nil {
						break
					}
					if try == 0 {
						retried++
						fmt.Printf("testenv: dns monitor: no answer from %s, retrying: %v\n", c.Node(i).Name, err)
					}
				}
				sent++
				if err != nil {
					failed++
				}
			}
		}
		out <- [2]int{sent, failed}
	}()
	return out
}

// Scenario 5: 5 nodes split 3/2 for about 20s with registrations and
// deregistrations on both sides. Both sides keep answering from their own
// copy; after the heal every node converges within 10s to the same set,
// with every change of either side present.
func TestPartition(t *testing.T) {
	const (
		nodes    = 5
		healWant = 10 * time.Second
	)
	// HERALD_PARTITION_SPLIT overrides the length of the split (default
	// 20s), to reproduce heal times that depend on when the heal happens.
	split := 20 * time.Second
	if v := os.Getenv("HERALD_PARTITION_SPLIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 5*time.Minute {
			t.Fatalf("HERALD_PARTITION_SPLIT=%q: want a duration from 10s to 5m", v)
		}
		split = d
	}
	sideA, sideB := []int{0, 1, 2}, []int{3, 4}
	c := Start(t, Options{Nodes: nodes, Mode: Netns})
	var views []*streamView
	for i := range nodes {
		views = append(views, watchNode(t, c, i))
	}
	m := &ownedModel{model: newModel(), owner: map[string]int{}}
	for k := range 100 {
		m.register(t, c, k%nodes, fmt.Sprintf("part-%d", k%5), fmt.Sprintf("b-%03d", k), k)
	}
	wait.Eventually(t, 10*time.Second, "every node holds the 100 base registrations", func() error {
		return converged(c, allNodes(nodes), views, m.model)
	})

	c.Partition(sideA, sideB)
	cut := time.Now()
	stopMon := make(chan struct{})
	monDone := dnsMonitor(c, allNodes(nodes), stopMon)
	sideViews := func(side []int) []*streamView {
		var out []*streamView
		for _, i := range side {
			out = append(out, views[i])
		}
		return out
	}
	// Each side reaps the other (AP: it serves what it can see).
	reap := wait.Eventually(t, 20*time.Second, "each side has reaped the other side's instances", func() error {
		for _, side := range [][]int{sideA, sideB} {
			if err := converged(c, side, sideViews(side), m.ownedBy(side)); err != nil {
				return err
			}
		}
		return nil
	})
	Figure(t, "partition_reap_other_side_seconds", reap.Seconds())

	n := 1000
	wave := func(w int) {
		for _, side := range [][]int{sideA, sideB} {
			for _, key := range m.firstOwnedBy(side, 5) {
				m.deregister(t, c, key[0], key[1])
			}
			for k := range 15 {
				node := side[k%len(side)]
				m.register(t, c, node, fmt.Sprintf("part-%d", k%5), fmt.Sprintf("w%d-n%d-%02d", w, node, k), n)
				n++
			}
		}
		for _, side := range [][]int{sideA, sideB} {
			wait.Eventually(t, 10*time.Second, fmt.Sprintf("wave %d: side %v serves its own changes", w, side), func() error {
				return converged(c, side, sideViews(side), m.ownedBy(side))
			})
		}
	}
	wave(1)
	// Keep the cut for the whole split, with a second wave in the middle;
	// the DNS monitor proves both sides keep answering meanwhile.
	// (These waits are the scenario's timeline, not a wait for a condition.)
	<-time.After(time.Until(cut.Add(split / 2)))
	wave(2)
	<-time.After(time.Until(cut.Add(split)))
	close(stopMon)
	mon := <-monDone
	Figure(t, "partition_split_seconds", time.Since(cut).Seconds())
	Figure(t, "partition_dns_queries_during_split", mon[0])
	Figure(t, "partition_dns_failed_during_split", mon[1])
	if mon[1] > 0 {
		t.Errorf("%d of %d DNS queries during the partition got no answer", mon[1], mon[0])
	}

	for _, v := range views {
		v.resetVanished()
	}
	c.Heal()
	d, err := wait.Until(60*time.Second, measureEvery, func() error { return converged(c, allNodes(nodes), views, m.model) })
	if err != nil {
		t.Fatalf("not converged 60s after the heal: %v", err)
	}
	Figure(t, "partition_heal_converge_seconds", d.Seconds())
	Figure(t, "partition_instances_after_heal", m.size())
	if d > healWant {
		t.Errorf("converged %s after the heal, want within %s", d.Round(time.Millisecond), healWant)
	}
}
