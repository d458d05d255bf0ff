package dnsserver

import (
	"errors"

	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/herald-sd/herald/cluster/registry"
)

// Reverse lookups: PTR under in-addr.arpa. and ip6.arpa. for the addresses
// Herald holds. An instance address names <id>.<service>.service.<domain>
// (one PTR per instance at that address), a node address
// <node>.node.<domain>. Every other address is NXDOMAIN.

// EventSource is the optional side of a Source that lets the reverse index
// follow changes instead of rescanning the registry. A *registry.Registry
// satisfies it.
type EventSource interface {
	EventsSince(rev uint64, max int) ([]registry.Event, error)
}

// revBatch is how many events one catch-up step reads.
const revBatch = 4096

// revIndex maps instance addresses to the instances at them. It is
// maintained from the change feed, so a change costs O(instances at its
// address), and brought up to date by the PTR query that needs it. Only
// when the feed no longer reaches back (or the Source has none) is it
// rebuilt from a snapshot.
type revIndex struct {
	src Source
	ev  EventSource // nil: rebuild on each new revision

	mu     sync.Mutex // serialises updates
	rev    atomic.Uint64
	built  atomic.Bool
	origin string
	addrOf map[registry.Key]netip.Addr // writers only
	// rebuilds counts full rebuilds (under mu), for tests.
	rebuilds int
	byAddr   sync.Map // netip.Addr -> []registry.Key, sorted, immutable
}

func newRevIndex(src Source) *revIndex {
	x := &revIndex{src: src, addrOf: make(map[registry.Key]netip.Addr)}
	x.ev, _ = src.(EventSource)
	return x
}

// lookup returns the instances at a, as of snap or later.
func (x *revIndex) lookup(snap *registry.Snapshot, a netip.Addr) []registry.Key {
	if !x.built.Load() || x.rev.Load() < snap.Revision() {
		x.catchUp(snap)
	}
	if v, ok := x.byAddr.Load(a); ok {
		return v.([]registry.Key)
	}
	return nil
}

func (x *revIndex) catchUp(snap *registry.Snapshot) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.built.Load() && x.origin == snap.Origin() {
		for x.ev != nil && x.rev.Load() < snap.Revision() {
			evs, err := x.ev.EventsSince(x.rev.Load(), revBatch)
			if err != nil || len(evs) == 0 {
				break // compacted, or the feed is behind the snapshot
			}
			for _, e := range evs {
				x.apply(e)
			}
			x.rev.Store(evs[len(evs)-1].Rev)
		}
		if x.rev.Load() >= snap.Revision() {
			return
		}
	}
	x.rebuild(snap)
}

// rebuild indexes every instance of snap: O(all data), only on the first
// PTR query and when the change feed cannot say what changed.
func (x *revIndex) rebuild(snap *registry.Snapshot) {
	x.rebuilds++
	x.byAddr.Clear()
	clear(x.addrOf)
	for _, name := range snap.ServiceNames() {
		svc := snap.Service(name)
		if svc == nil {
			continue
		}
		for in := range svc.All() {
			x.put(in.Key(), in.Address)
		}
	}
	x.origin = snap.Origin()
	x.rev.Store(snap.Revision())
	x.built.Store(true)
}

func (x *revIndex) apply(e registry.Event) {
	if e.Instance == nil {
		return
	}
	k := e.Instance.Key()
	switch e.Op {
	case registry.OpUpsert:
		x.put(k, e.Instance.Address)
	default:
		x.remove(k)
	}
}

func (x *revIndex) put(k registry.Key, a netip.Addr) {
	if old, ok := x.addrOf[k]; ok {
		if old == a {
			return
		}
		x.remove(k)
	}
	x.addrOf[k] = a
	var keys []registry.Key
	if v, ok := x.byAddr.Load(a); ok {
		keys = v.([]registry.Key)
	}
	i, _ := slices.BinarySearchFunc(keys, k, cmpKey)
	x.byAddr.Store(a, slices.Insert(slices.Clone(keys), i, k))
}

func (x *revIndex) remove(k registry.Key) {
	a, ok := x.addrOf[k]
	if !ok {
		return
	}
	delete(x.addrOf, k)
	v, ok := x.byAddr.Load(a)
	if !ok {
		return
	}
	keys := v.([]registry.Key)
	i, found := slices.BinarySearchFunc(keys, k, cmpKey)
	if !found {
		return
	}
	if len(keys) == 1 {
		x.byAddr.Delete(a)
		return
	}
	x.byAddr.Store(a, slices.Delete(slices.Clone(keys), i, i+1))
}

func cmpKey(a, b registry.Key) int {
	if c := strings.Compare(a.Service, b.Service); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// errNotReverse marks a name that is not a full reverse name of an address.
var errNotReverse = errors.New("dnsserver: not a reverse address name")

// reverseZones are the reverse zones, lower case, with their wire lengths.
const (
	zoneV4 = "in-addr.arpa."
	zoneV6 = "ip6.arpa."
)

// reverseZone reports which reverse zone qname is in ("" for none), ignoring
// case.
func reverseZone(qname string) string {
	for _, z := range [...]string{zoneV4, zoneV6} {
		if len(qname) >= len(z) && strings.EqualFold(qname[len(qname)-len(z):], z) &&
			(len(qname) == len(z) || qname[len(qname)-len(z)-1] == '.') {
			return z
		}
	}
	return ""
}

// parseReverse maps a full reverse name to its address: four decimal labels
// under in-addr.arpa., 32 nibble labels under ip6.arpa., least significant
// first. Anything else, including a partial name, is errNotReverse.
func parseReverse(qname, zone string) (netip.Addr, error) {
	rest := qname[:len(qname)-len(zone)]
	if rest == "" {
		return netip.Addr{}, errNotReverse
	}
	rest = rest[:len(rest)-1] // the dot before the zone
	if zone == zoneV4 {
		var b [4]byte
		for i := 3; i >= 0; i-- {
			var lab string
			if i == 0 {
				lab = rest
			} else {
				j := strings.IndexByte(rest, '.')
				if j < 0 {
					return netip.Addr{}, errNotReverse
				}
				lab, rest = rest[:j], rest[j+1:]
			}
			if len(lab) == 0 || len(lab) > 3 || (len(lab) > 1 && lab[0] == '0') {
				return netip.Addr{}, errNotReverse
			}
			n := 0
			for k := 0; k < len(lab); k++ {
				c := lab[k]
				if c < '0' || c > '9' {
					return netip.Addr{}, errNotReverse
				}
				n = n*10 + int(c-'0')
			}
			if n > 255 {
				return netip.Addr{}, errNotReverse
			}
			b[i] = byte(n)
		}
		return netip.AddrFrom4(b), nil
	}
	if len(rest) != 63 {
		return netip.Addr{}, errNotReverse
	}
	var b [16]byte
	for i := 0; i < 32; i++ {
		if i < 31 && rest[2*i+1] != '.' {
			return netip.Addr{}, errNotReverse
		}
		c := rest[2*i]
		if c >= 'A' && c <= 'F' {
			c += 'a' - 'A'
		}
		v, ok := unhex(c)
		if !ok {
			return netip.Addr{}, errNotReverse
		}
		// Label i is nibble 31-i of the address.
		n := 31 - i
		if n%2 == 0 {
			b[n/2] |= v << 4
		} else {
			b[n/2] |= v
		}
	}
	a := netip.AddrFrom16(b)
	if a.Is4In6() {
		return netip.Addr{}, errNotReverse // Herald holds IPv4 as IPv4
	}
	return a, nil
}

// serveReverse answers a query under a reverse zone: PTR records for an
// address Herald holds, NODATA for other types, NXDOMAIN for any other
// name. The SOA of negative answers is owned by the reverse zone.
func (h *Handler) serveReverse(mw *msgWriter, snap *registry.Snapshot, qname, zone string, qtype uint16) int {
	a, err := parseReverse(qname, zone)
	if err != nil {
		return dns.RcodeNameError
	}
	found := false
	for _, k := range h.rev.lookup(snap, a) {
		svc := snap.Service(k.Service)
		if svc == nil {
			continue
		}
		in := svc.Instance(k.ID)
		if in == nil || in.Address != a {
			continue // the index is ahead of this snapshot
		}
		found = true
		if qtype == dns.TypePTR && len(in.ID) <= 63 {
			mw.ptrRecord(h.ttl, in.ID, in.Service, labelService, h.domainBytes)
		}
	}
	snap.RangeNodes(func(n registry.Node) bool {
		if n.Addr.IsValid() && n.Addr.Unmap() == a && len(n.Name) <= 63 {
			found = true
			if qtype == dns.TypePTR {
				mw.ptrRecord(h.ttl, n.Name, "", labelNode, h.domainBytes)
			}
		}
		return true
	})
	if !found {
		return dns.RcodeNameError
	}
	if qtype == dns.TypeANY {
		mw.hinfo()
	}
	return dns.RcodeSuccess
}

// instanceByLabel returns the instance of svc whose ID is label, ignoring
// ASCII case (DNS names do), or nil.
func instanceByLabel(svc *registry.Service, label string) *registry.Instance {
	if in := svc.Instance(label); in != nil {
		return in
	}
	for in := range svc.All() {
		if strings.EqualFold(in.ID, label) {
			return in
		}
	}
	return nil
}

// parseEscapedInstance parses a query name with escapes as
// <id>.<service>.service.<domain>, where the id label may hold any byte (a
// PTR target spells an ID with dots or other characters as is).
func parseEscapedInstance(qname string, domainWire []byte) query {
	var buf [256]byte
	n, err := dns.PackDomainName(qname, buf[:], 0, nil, false)
	if err != nil || n < len(domainWire) || !strings.EqualFold(string(buf[n-len(domainWire):n]), string(domainWire)) {
		return query{}
	}
	b := buf[:n-len(domainWire)]
	var labels [][]byte
	for len(b) > 0 {
		l := int(b[0])
		if 1+l > len(b) {
			return query{}
		}
		labels = append(labels, b[1:1+l])
		b = b[1+l:]
	}
	if len(labels) != 3 || !strings.EqualFold(string(labels[2]), "service") {
		return query{}
	}
	svc := strings.ToLower(string(labels[1]))
	if strings.ContainsAny(svc, ".\\") {
		return query{}
	}
	return query{kind: kindService, service: svc, tag: string(labels[0]), idOnly: true}
}
