package testenv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// measureEvery is how often the scenarios poll what they measure (with
// wait.Until): the resolution of their figures.
const measureEvery = 10 * time.Millisecond

// model is the set of instances a scenario expects: service -> id -> addr.
type model struct {
	mu sync.Mutex
	m  map[string]map[string]netip.Addr
	// services lists every service ever used, so that a service that must
	// now be empty is checked too.
	services map[string]bool
}

func newModel() *model {
	return &model{m: map[string]map[string]netip.Addr{}, services: map[string]bool{}}
}

func (m *model) add(svc, id string, a netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m[svc] == nil {
		m.m[svc] = map[string]netip.Addr{}
	}
	m.m[svc][id] = a
	m.services[svc] = true
}

func (m *model) remove(svc, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m[svc], id)
	if len(m.m[svc]) == 0 {
		delete(m.m, svc)
	}
}

func (m *model) clone() *model {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := newModel()
	for s, ids := range m.m {
		c.m[s] = maps.Clone(ids)
	}
	maps.Copy(c.services, m.services)
	return c
}

func (m *model) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ids := range m.m {
		n += len(ids)
	}
	return n
}

// addrs returns the sorted addresses of one service.
func (m *model) addrs(svc string) []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.m[svc]))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (m *model) serviceNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.services))
}

// ids returns service -> sorted ids.
func (m *model) ids() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for s, ids := range m.m {
		out[s] = slices.Sorted(maps.Keys(ids))
	}
	return out
}

// addrN is the n-th data address, 10.100.0.0 + n: it only appears in
// answers and is never contacted.
func addrN(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 100 + byte(n>>16), byte(n >> 8), byte(n)})
}

// registerPlain registers a plain instance (no check: lives until
// deregistered; persisted with -data-dir) on node i.
func registerPlain(ctx context.Context, c *Cluster, i int, svc, id string, a netip.Addr, port uint32) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.API(i).Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
		Service: svc, Id: id, Address: a.String(), Port: port,
	}})
	if err != nil {
		return fmt.Errorf("register %s/%s on %s: %w", svc, id, c.Node(i).Name, err)
	}
	return nil
}

func deregister(ctx context.Context, c *Cluster, i int, svc, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.API(i).Deregister(ctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: svc, Id: id}})
	if err != nil {
		return fmt.Errorf("deregister %s/%s on %s: %w", svc, id, c.Node(i).Name, err)
	}
	return nil
}

// streamView follows one node's Watch stream (all services) through
// pushsvc/client and keeps its latest state.
type streamView struct {
	node string
	w    *client.Watcher

	mu      sync.Mutex
	last    map[string]map[string]client.Instance
	updates int
	at      time.Time
	// vanished collects every "service/id" that was present in one update
	// and absent from the next; appeared every one absent, then present.
	vanished, appeared map[string]bool
}

// watchNode starts a watch of every service on node i (without failover),
// stopped at the end of the test.
func watchNode(t testing.TB, c *Cluster, i int) *streamView {
	t.Helper()
	cl := c.Client([]int{i})
	w, err := cl.Watch(context.Background(), nil)
	if err != nil {
		t.Fatalf("watch %s: %v", c.Node(i).Name, err)
	}
	v := &streamView{node: c.Node(i).Name, w: w, vanished: map[string]bool{}, appeared: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range w.Updates() {
			v.apply(u)
		}
	}()
	t.Cleanup(func() { w.Close(); <-done })
	return v
}

func (v *streamView) apply(u client.Update) {
	next := map[string]map[string]client.Instance{}
	for svc, insts := range u.Services {
		for _, in := range insts {
			if next[svc] == nil {
				next[svc] = map[string]client.Instance{}
			}
			next[svc][in.ID] = in
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for svc, ids := range v.last {
		for id := range ids {
			if _, ok := next[svc][id]; !ok {
				v.vanished[svc+"/"+id] = true
			}
		}
	}
	for svc, ids := range next {
		for id := range ids {
			if _, ok := v.last[svc][id]; !ok {
				v.appeared[svc+"/"+id] = true
			}
		}
	}
	v.last = next
	v.updates++
	v.at = time.Now()
}

// instance returns the instance the stream holds, if any.
func (v *streamView) instance(svc, id string) (client.Instance, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	in, ok := v.last[svc][id]
	return in, ok
}

// resetVanished forgets what vanished and appeared so far.
func (v *streamView) resetVanished() {
	v.mu.Lock()
	v.vanished = map[string]bool{}
	v.appeared = map[string]bool{}
	v.mu.Unlock()
}

func (v *streamView) appearedKeys() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Sorted(maps.Keys(v.appeared))
}

func (v *streamView) vanishedKeys() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Sorted(maps.Keys(v.vanished))
}

// diff compares the stream's state with the model exactly (ids and
// addresses of every service).
func (v *streamView) diff(want *model) error {
	want.mu.Lock()
	defer want.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	var errs []string
	for svc, ids := range want.m {
		for id, a := range ids {
			in, ok := v.last[svc][id]
			if !ok {
				errs = append(errs, "missing "+svc+"/"+id)
			} else if in.Address != a {
				errs = append(errs, fmt.Sprintf("%s/%s at %s, want %s", svc, id, in.Address, a))
			}
		}
	}
	for svc, ids := range v.last {
		for id := range ids {
			if _, ok := want.m[svc][id]; !ok {
				errs = append(errs, "unexpected "+svc+"/"+id)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("watch on %s: %d differences, e.g. %s", v.node, len(errs), strings.Join(firstN(errs, 5), "; "))
}

func firstN(s []string, n int) []string {
	sort.Strings(s)
	return s[:min(n, len(s))]
}

// dnsDiff compares node i's A answers for every service of the model with
// the model exactly.
func dnsDiff(ctx context.Context, c *Cluster, i int, want *model) error {
	for _, svc := range want.serviceNames() {
		ans, err := c.Query(ctx, i, svc+".service.herald.", dns.TypeA)
		if err != nil {
			return err
		}
		exp := want.addrs(svc)
		if len(exp) == 0 {
			if len(ans.Addrs) != 0 {
				return fmt.Errorf("dns on %s: %s has %d addresses, want none", c.Node(i).Name, svc, len(ans.Addrs))
			}
			continue
		}
		if ans.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("dns on %s: %s: rcode %s", c.Node(i).Name, svc, dns.RcodeToString[ans.Rcode])
		}
		if !slices.Equal(ans.Addrs, exp) {
			return fmt.Errorf("dns on %s: %s has %d addresses, want %d", c.Node(i).Name, svc, len(ans.Addrs), len(exp))
		}
	}
	return nil
}

// converged checks the DNS of every listed node and every view against want.
func converged(c *Cluster, nodes []int, views []*streamView, want *model) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, v := range views {
		if err := v.diff(want); err != nil {
			errs = append(errs, err)
		}
	}
	for _, i := range nodes {
		if err := dnsDiff(ctx, c, i, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// allNodes returns 0..n-1.
func allNodes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// runParallel runs f(k) for k in [0, n) on workers goroutines and returns
// the errors.
func runParallel(n, workers int, f func(k int) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				if err := f(k); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for k := range n {
		next <- k
	}
	close(next)
	wg.Wait()
	return errs
}
