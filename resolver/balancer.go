package resolver

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"
)

// BalancerName is the name the weighted balancer is registered under. A
// service config selects it with
//
//	{"loadBalancingConfig": [{"herald_weighted": {}}]}
//
// and the herald resolver's default service config does (see
// DefaultServiceConfig).
//
// The balancer keeps one connection (a pick_first child) per endpoint and
// sends each endpoint a share of the RPCs proportional to its weight
// (Info.Weight; 1 for addresses that did not come from the herald
// resolver), in an evenly interleaved weighted order (earliest deadline
// first over a precomputed cycle). Only READY endpoints
// are picked, so an endpoint in TRANSIENT_FAILURE gives its share to the
// others in proportion to their weights. Endpoints of weight 0 get no
// RPCs. A weight change arriving with a push rebuilds the picker without
// touching the connections.
//
// An RPC that a Herald guard refused (codes.Unavailable with the trailer
// RefusedTrailer) takes its endpoint out of the rotation of this
// ClientConn for the ejection time (config "ejectionSeconds", default 5),
// so that the retry of the default service config, and the RPCs after it,
// go to the other endpoints until the push that removes the refusing
// instance arrives.
const BalancerName = "herald_weighted"

// RefusedTrailer is the trailer key a Herald guard sets on an RPC it
// refused; its value says why ("draining" or "not registered").
const RefusedTrailer = "herald-refused"

// maxTableLen bounds the pick table: weights whose sum is larger are scaled
// down to about this many slots (each endpoint keeps at least one).
const maxTableLen = 4096

// defaultEjection is how long a refusing endpoint stays out of rotation.
const defaultEjection = 5 * time.Second

func init() { balancer.Register(weightedBuilder{}) }

type weightedBuilder struct{}

func (weightedBuilder) Name() string { return BalancerName }

// weightedConfig is the balancer's JSON config.
type weightedConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	EjectionSeconds                   *float64 `json:"ejectionSeconds,omitempty"`
}

func (weightedBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c weightedConfig
	if len(js) > 0 {
		if err := json.Unmarshal(js, &c); err != nil {
			return nil, fmt.Errorf("%s: config: %w", BalancerName, err)
		}
	}
	if c.EjectionSeconds != nil && (*c.EjectionSeconds < 0 || *c.EjectionSeconds > 3600) {
		return nil, fmt.Errorf("%s: config: ejectionSeconds %v: want 0..3600", BalancerName, *c.EjectionSeconds)
	}
	return &c, nil
}

func (weightedBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &weightedBalancer{cc: cc, children: grpcresolver.NewEndpointMap[*weightedChild]()}
	b.ejection.Store(int64(defaultEjection))
	b.Balancer = endpointsharding.NewBalancer(&childUpdates{ClientConn: cc, b: b}, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// weightedBalancer wraps endpointsharding: endpointsharding owns the
// children (one pick_first per endpoint); this type turns their states into
// a weighted picker.
type weightedBalancer struct {
	balancer.Balancer // endpointsharding
	cc                balancer.ClientConn
	ejection          atomic.Int64 // time.Duration

	mu       sync.Mutex // guards children; held while building and sending a picker
	children *grpcresolver.EndpointMap[*weightedChild]
}

func (b *weightedBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	ejection := defaultEjection
	if c, ok := s.BalancerConfig.(*weightedConfig); ok && c.EjectionSeconds != nil {
		ejection = time.Duration(*c.EjectionSeconds * float64(time.Second))
	}
	b.ejection.Store(int64(ejection))
	// pick_first children do not understand our config.
	return b.Balancer.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

// childUpdates intercepts endpointsharding's aggregated state.
type childUpdates struct {
	balancer.ClientConn
	b *weightedBalancer
}

func (u *childUpdates) UpdateState(s balancer.State) { u.b.updateState(s) }

// weightedChild is the per-endpoint state that outlives pickers: its
// ejection deadline.
type weightedChild struct {
	ejectedUntil atomic.Int64 // unix nanos; 0: in rotation
	ejection     *atomic.Int64
	done         func(balancer.DoneInfo)
}

func (c *weightedChild) onDone(di balancer.DoneInfo) {
	if refused(di) {
		if d := c.ejection.Load(); d > 0 {
			c.ejectedUntil.Store(time.Now().Add(time.Duration(d)).UnixNano())
		}
	}
}

// refused reports whether an RPC ended with a Herald guard's refusal.
func refused(di balancer.DoneInfo) bool {
	if di.Err == nil {
		return false
	}
	if len(di.Trailer.Get(RefusedTrailer)) > 0 {
		return true
	}
	st, ok := status.FromError(di.Err)
	return ok && st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "herald: ")
}

// ejected reports whether the child is out of rotation now; an expired
// ejection is cleared.
func (c *weightedChild) ejected() bool {
	until := c.ejectedUntil.Load()
	if until == 0 {
		return false
	}
	if time.Now().UnixNano() < until {
		return true
	}
	c.ejectedUntil.CompareAndSwap(until, 0)
	return false
}

func (b *weightedBalancer) updateState(s balancer.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	states := endpointsharding.ChildStatesFromPicker(s.Picker)
	next := grpcresolver.NewEndpointMap[*weightedChild]()
	var ready []pickEntry
	for _, cs := range states {
		c, ok := b.children.Get(cs.Endpoint)
		if !ok {
			c = &weightedChild{ejection: &b.ejection}
			c.done = c.onDone
		}
		next.Set(cs.Endpoint, c)
		w := endpointWeight(cs.Endpoint)
		if cs.State.ConnectivityState == connectivity.Ready && w > 0 {
			ready = append(ready, pickEntry{picker: cs.State.Picker, child: c, weight: w})
		}
	}
	b.children = next
	if len(ready) == 0 {
		// Nothing to weigh: pass on endpointsharding's own state and
		// picker (connecting, idle or failing, it queues or fails RPCs
		// as round_robin does).
		b.cc.UpdateState(s)
		return
	}
	b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: newWeightedPicker(ready)})
}

// endpointWeight is the endpoint's herald weight, 1 when it has none.
func endpointWeight(e grpcresolver.Endpoint) uint32 {
	if i, ok := e.Attributes.Value(infoKey{}).(Info); ok {
		return i.Weight
	}
	if len(e.Addresses) > 0 {
		if i, ok := InfoFromAddress(e.Addresses[0]); ok {
			return i.Weight
		}
	}
	return 1
}

type pickEntry struct {
	picker balancer.Picker
	child  *weightedChild
	weight uint32
}

// weightedPicker picks from a precomputed weighted schedule
// (scheduleTable) with one atomic add: no lock and no allocation per pick.
type weightedPicker struct {
	entries []pickEntry
	table   []uint32 // indexes into entries
	_       [64]byte // keeps next off the cache line every pick reads
	next    atomic.Uint32
}

func newWeightedPicker(entries []pickEntry) *weightedPicker {
	p := &weightedPicker{entries: entries, table: scheduleTable(weightsOf(entries))}
	p.next.Store(rand.Uint32()) // clients start at different places
	return p
}

func weightsOf(es []pickEntry) []uint32 {
	w := make([]uint32, len(es))
	for i, e := range es {
		w[i] = e.weight
	}
	return w
}

func (p *weightedPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	n := uint32(len(p.table))
	start := p.next.Add(1)
	e := &p.entries[p.table[start%n]]
	if e.child.ejected() {
		// Walk the sequence to the next endpoint in rotation; when every
		// endpoint is ejected, use the first choice.
		for i := uint32(1); i < n; i++ {
			c := &p.entries[p.table[(start+i)%n]]
			if !c.child.ejected() {
				e = c
				break
			}
		}
	}
	r, err := e.picker.Pick(info)
	if err != nil {
		return r, err
	}
	if r.Done == nil {
		r.Done = e.child.done
	} else {
		inner := r.Done
		r.Done = func(di balancer.DoneInfo) { e.child.onDone(di); inner(di) }
	}
	return r, nil
}

// scheduleTable returns one cycle of an earliest-deadline-first schedule
// over the weights, scaled down so that the cycle is at most about
// maxTableLen long (longer only with more endpoints): endpoint i, of
// weight w, is due at (k-0.5)/w for k = 1..w, so in one cycle it appears
// exactly w times, spread evenly and interleaved with the others. Ties go
// to the lower index. Building it costs O(cycle × log(endpoints)).
// Weights must be > 0.
func scheduleTable(weights []uint32) []uint32 {
	w := scaleWeights(weights)
	var total int64
	h := make(dueHeap, len(w))
	for i, x := range w {
		total += x
		h[i] = due{at: 0.5 / float64(x), idx: uint32(i), k: 1}
	}
	heap.Init(&h)
	table := make([]uint32, total)
	for n := range table {
		d := &h[0]
		table[n] = d.idx
		d.k++
		d.at = (float64(d.k) - 0.5) / float64(w[d.idx])
		heap.Fix(&h, 0)
	}
	return table
}

// due is an endpoint's next slot in scheduleTable.
type due struct {
	at  float64
	idx uint32
	k   int64
}

type dueHeap []due

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].idx < h[j].idx)
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scaleWeights divides by the greatest common divisor and, if the sum is
// still above maxTableLen, scales proportionally (each weight stays >= 1).
func scaleWeights(weights []uint32) []int64 {
	g := uint64(0)
	for _, x := range weights {
		g = gcd(g, uint64(x))
	}
	w := make([]int64, len(weights))
	var sum uint64
	for i, x := range weights {
		w[i] = int64(uint64(x) / g)
		sum += uint64(w[i])
	}
	if sum > maxTableLen {
		for i := range w {
			w[i] = max(1, int64(float64(w[i])*maxTableLen/float64(sum)+0.5))
		}
	}
	return w
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
