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
	a    blockList[byte] // A records, aRecLen bytes each, one per distinct IPv4
	aaaa blockList[byte] // AAAA records, aaaaRecLen bytes each
	srv  blockList[srvRec]
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

// renderCache holds the answer sets of each service: those of its newest
// version that a query has asked for, keyed on the *registry.Service they
// were built from. A new version of a service is a new pointer, so a stale
// entry is detected with one comparison, and the answers are brought up to
// date once per version, not once per query.
//
// A new version costs what changed in it (setBuilder): a registration into
// a service of 50,000 instances updates its answers in well under a
// millisecond. Building a set from scratch (the first query, or after most
// of a service changed) costs about 1 µs per instance. So that a client
// churning a large service while it is queried cannot make the DNS server
// spend its cores on rebuilding it, a service whose last update looked at
// renderSlowSteps instances or more is updated by one query at a time (the
// others answer from the version before), and only after renderBackoff
// times as long as that update took: at most a tenth of one core per
// service, and answers that lag the registry by at most that much. Other
// updates, of a few changes each, are always answered from the newest
// version.
//
// Readers never lock: services is a sync.Map (a concurrent hash trie), so
// adding the first entry of a service costs O(1), not a copy of every
// entry. Entries of services that are gone are swept after as many adds as
// there were entries at the last sweep, so sweeping is O(1) per add.
type renderCache struct {
	ttl      uint32
	renders  atomic.Uint64 // versions brought up to date
	services sync.Map      // string -> *serviceEntry

	mu      sync.Mutex // serialises adds and sweeps
	size    int        // entries, as of the last add
	sweepAt int        // sweep when size reaches it
}

// Updates back off for services that took renderSlowSteps or more to
// update: counted in work, not time, so that a pause of the process never
// holds back the answers of a small service.
const (
	renderSlowSteps = 4096
	renderBackoff   = 10
	// maxTagSets bounds the tags whose answer sets a service keeps up to
	// date; others are built from scratch for each version asked for.
	maxTagSets = 32
)

type serviceEntry struct {
	cur atomic.Pointer[serviceRender] // the newest version built

	mu   sync.Mutex // serialises the builders
	all  *setBuilder
	tags map[string]*setBuilder
}

// serviceRender is the rendered state of one version of a service.
type serviceRender struct {
	svc  *registry.Service
	all  *answerSet
	next time.Time // when a newer version may be built; zero: at once
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
		e.mu.Lock()
		r = c.update(e, svc)
		e.mu.Unlock()
	case r.svc != svc && svc.Rev > r.svc.Rev && time.Now().After(r.next) && e.mu.TryLock():
		r = c.update(e, svc)
		e.mu.Unlock()
	}
	// Otherwise this query answers from r: it is this version, or a newer
	// one (the query's snapshot is older), or that of a large service that
	// was updated moments ago or is being updated by another query.
	if tag == "" {
		return r.all
	}
	if tags := r.tags.Load(); tags != nil {
		if s, ok := (*tags)[tag]; ok {
			return s
		}
	}
	return c.addTag(e, r, tag)
}

// update brings e to svc, unless another query has brought it to svc or
// later meanwhile, and returns the newest version. e.mu is held.
func (c *renderCache) update(e *serviceEntry, svc *registry.Service) *serviceRender {
	if r := e.cur.Load(); r != nil && r.svc.Rev >= svc.Rev {
		return r
	}
	if svc.Len() <= smallService {
		// Built from scratch, and nothing kept but the answers: most
		// services are small, and the cache holds one entry per service.
		e.all, e.tags = nil, nil
		r := &serviceRender{svc: svc, all: newSetBuilder("", c.ttl).rebuild(svc)}
		c.renders.Add(1)
		e.cur.Store(r)
		return r
	}
	start := time.Now()
	if e.all == nil {
		e.all = newSetBuilder("", c.ttl)
	}
	steps := e.all.steps
	r := &serviceRender{svc: svc, all: e.all.update(svc)}
	if e.all.steps-steps >= renderSlowSteps {
		r.next = start.Add(renderBackoff * time.Since(start))
	}
	c.renders.Add(1)
	e.cur.Store(r)
	return r
}

// addTag builds the answer set of r's version for tag and keeps it in r;
// nil if no instance of that version has the tag.
func (c *renderCache) addTag(e *serviceEntry, r *serviceRender, tag string) *answerSet {
	e.mu.Lock()
	defer e.mu.Unlock()
	var old map[string]*answerSet
	if p := r.tags.Load(); p != nil {
		old = *p
	}
	if s, ok := old[tag]; ok {
		return s
	}
	b := e.tags[tag]
	if b == nil {
		b = newSetBuilder(tag, c.ttl)
		if len(e.tags) < maxTagSets && r.svc.Len() > smallService {
			if e.tags == nil {
				e.tags = map[string]*setBuilder{}
			}
			e.tags[tag] = b
		}
	}
	s := b.update(r.svc)
	if b.tagged == 0 {
		delete(e.tags, tag) // never kept: the tags of a version are bounded, the names asked for are not
		return nil
	}
	m := make(map[string]*answerSet, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[tag] = s
	r.tags.Store(&m)
	return s
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
