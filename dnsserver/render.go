package dnsserver

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// srvPriority is the priority of every SRV record: all instances are equal,
// and weights spread the load between them.
const srvPriority = 1

// Sizes of the pre-rendered address records: a pointer to the question
// name, type, class, TTL, rdlength and the address.
const (
	aRecLen    = 2 + 10 + 4
	aaaaRecLen = 2 + 10 + 16
)

// answerSet is the rendered answer for one service, optionally filtered by
// a tag: every record that a query can return, in wire format, with owner
// names compressed to the question name. It is built once per version of
// the service and is immutable.
type answerSet struct {
	a    []byte // A records, aRecLen bytes each, one per distinct IPv4
	aaaa []byte // AAAA records, aaaaRecLen bytes each
	srv  []srvRec
	// targets are the distinct SRV target names: one per address.
	targets []srvTarget
	// Round-robin positions, one per record type, so that clients asking
	// A and AAAA in pairs still see every A record first in turn. They
	// are the only written fields: the padding keeps them off the cache
	// line of the read-only fields above, which every query loads.
	_                     [64]byte
	rotA, rotAAAA, rotSRV atomic.Uint64
}

type srvRec struct {
	rdata  [6]byte // priority, weight, port
	target int     // index into targets
}

type srvTarget struct {
	label []byte // the length-prefixed hex label of <hex>.addr.<domain>
	rr    []byte // the target's A or AAAA record after its owner name
}

// renderSet builds the answer set of the serving instances of svc that
// carry tag (any instance if tag is empty).
func renderSet(svc *registry.Service, tag string, ttl uint32) *answerSet {
	s := &answerSet{}
	targetOf := make(map[netip.Addr]int)
	type srvKey struct {
		target int
		port   uint16
	}
	srvOf := make(map[srvKey]int)
	weights := []uint64{}
	for in := range svc.All() {
		if !in.Serving() || (tag != "" && !in.HasTag(tag)) {
			continue
		}
		t, seen := targetOf[in.Address]
		if !seen {
			t = len(s.targets)
			targetOf[in.Address] = t
			s.targets = append(s.targets, newTarget(in.Address, ttl))
			rr := s.targets[t].rr
			if in.Address.Is4() {
				s.a = append(append(s.a, 0xC0, 12), rr...)
			} else {
				s.aaaa = append(append(s.aaaa, 0xC0, 12), rr...)
			}
		}
		// One SRV record per distinct target and port: instances that
		// share both add their weights to it.
		k := srvKey{t, in.Port}
		if i, dup := srvOf[k]; dup {
			weights[i] += uint64(in.Weight)
			continue
		}
		srvOf[k] = len(s.srv)
		weights = append(weights, uint64(in.Weight))
		var r srvRec
		binary.BigEndian.PutUint16(r.rdata[0:], srvPriority)
		binary.BigEndian.PutUint16(r.rdata[4:], in.Port)
		r.target = t
		s.srv = append(s.srv, r)
	}
	for i, w := range weights {
		binary.BigEndian.PutUint16(s.srv[i].rdata[2:], uint16(min(w, 0xFFFF)))
	}
	return s
}

func newTarget(a netip.Addr, ttl uint32) srvTarget {
	label := hexLabel(a)
	t := srvTarget{label: append([]byte{byte(len(label))}, label...)}
	t.rr = appendAddrRR(nil, a, ttl)
	return t
}

// appendAddrRR appends an A or AAAA record without its owner name.
func appendAddrRR(b []byte, a netip.Addr, ttl uint32) []byte {
	typ, ip := dns.TypeAAAA, a.AsSlice()
	if a.Is4() {
		typ = dns.TypeA
	}
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, dns.ClassINET)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ip)))
	return append(b, ip...)
}

// renderCache holds the answer sets of each service keyed on the
// *registry.Service they were rendered from: a new version of a service is
// a new pointer, so a stale entry is detected with one comparison, and the
// answers are rendered once per version, not once per query.
//
// Rendering a version costs O(its instances): about 1 µs each, 50 ms for a
// service of 50,000. So that a client churning a large service while it is
// queried cannot make the DNS server spend its cores re-rendering it, a
// service is rendered by one query at a time (the others answer from the
// version before), and a service whose last render took at least
// renderSlow is rendered again only after renderBackoff times that: at
// most a tenth of one core per service, and answers at most that much
// older than the registry (0.5 s for 50,000 instances). Services that
// render faster, almost all of them, are always answered from the newest
// version.
//
// Readers never lock: services is a sync.Map (a concurrent hash trie), so
// adding the first entry of a service costs O(1), not a copy of every
// entry. Entries of services that are gone are swept after as many adds as
// there were entries at the last sweep, so sweeping is O(1) per add.
type renderCache struct {
	ttl      uint32
	renders  atomic.Uint64 // versions rendered
	services sync.Map      // string -> *serviceEntry

	mu      sync.Mutex // serialises adds and sweeps
	size    int        // entries, as of the last add
	sweepAt int        // sweep when size reaches it
}

// Rendering backs off for services slower to render than renderSlow.
const (
	renderSlow    = time.Millisecond
	renderBackoff = 10
)

type serviceEntry struct {
	cur       atomic.Pointer[serviceRender]
	rendering atomic.Bool // a query is rendering a newer version
}

// serviceRender is the rendered state of one version of a service.
type serviceRender struct {
	svc  *registry.Service
	all  *answerSet
	next time.Time  // when a newer version may be rendered; zero: at once
	mu   sync.Mutex // serialises writers of tags
	// tags holds the answer sets of the tags that some instance carries;
	// copy-on-write, filled on first query.
	tags atomic.Pointer[map[string]*answerSet]
}

func newRenderCache(ttl uint32) *renderCache {
	return &renderCache{ttl: ttl, sweepAt: 64}
}

// get returns the answer set of svc for tag, or nil if no instance of svc
// has the tag (the name does not exist). snap is the snapshot svc is from.
func (c *renderCache) get(snap *registry.Snapshot, svc *registry.Service, tag string) *answerSet {
	var e *serviceEntry
	if v, ok := c.services.Load(svc.Name); ok {
		e = v.(*serviceEntry)
	} else {
		e = c.add(snap, svc.Name)
	}
	r := e.cur.Load()
	switch {
	case r == nil, r.svc != svc && svc.Rev > r.svc.Rev && r.next.IsZero():
		r = c.render(svc)
		e.cur.Store(r) // racing renders are of versions at least as new as what was there
	case r.svc != svc && svc.Rev > r.svc.Rev && time.Now().After(r.next) && e.rendering.CompareAndSwap(false, true):
		r = c.render(svc)
		e.cur.Store(r)
		e.rendering.Store(false)
	}
	// Otherwise this query answers from r: it is this version, or a newer
	// one (the query's snapshot is older), or that of a large service that
	// was rendered moments ago or is being rendered by another query.
	if tag == "" {
		return r.all
	}
	if tags := r.tags.Load(); tags != nil {
		if s, ok := (*tags)[tag]; ok {
			return s
		}
	}
	return r.addTag(tag, c.ttl)
}

// render renders the answer set of every serving instance of svc, and
// when a newer version may be rendered.
func (c *renderCache) render(svc *registry.Service) *serviceRender {
	c.renders.Add(1)
	start := time.Now()
	r := &serviceRender{svc: svc, all: renderSet(svc, "", c.ttl)}
	if took := time.Since(start); took >= renderSlow {
		r.next = start.Add(renderBackoff * took)
	}
	return r
}

func (c *renderCache) add(snap *registry.Snapshot, name string) *serviceEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, loaded := c.services.LoadOrStore(name, &serviceEntry{})
	if loaded {
		return v.(*serviceEntry)
	}
	c.size++
	if c.size >= c.sweepAt {
		c.sweep(snap)
	}
	return v.(*serviceEntry)
}

// sweep drops the entries of services that snap does not hold.
func (c *renderCache) sweep(snap *registry.Snapshot) {
	n := 0
	c.services.Range(func(k, _ any) bool {
		if snap.Service(k.(string)) == nil {
			c.services.Delete(k)
		} else {
			n++
		}
		return true
	})
	c.size, c.sweepAt = n, max(2*n, 64)
}

func (r *serviceRender) addTag(tag string, ttl uint32) *answerSet {
	known := false
	for in := range r.svc.All() {
		if in.HasTag(tag) {
			known = true
			break
		}
	}
	if !known {
		return nil // never cached: the tag set of a version is bounded
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var old map[string]*answerSet
	if p := r.tags.Load(); p != nil {
		old = *p
	}
	if s, ok := old[tag]; ok {
		return s
	}
	s := renderSet(r.svc, tag, ttl)
	m := make(map[string]*answerSet, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[tag] = s
	r.tags.Store(&m)
	return s
}
