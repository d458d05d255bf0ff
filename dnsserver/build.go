package dnsserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/herald-sd/herald/cluster/registry"
)

// setBuilder keeps one answer set, that of a service or of its instances
// with one tag, up to date as the service changes. A new version costs the
// instances that changed, found by skipping the chunks the two versions
// share (diffServices), and a copy of the set's record arrays, which
// queries of the previous version may still be reading: about 30 bytes per
// record, memmoved. The first version, and one after a change to most of
// the service, is built from scratch.
//
// A builder is not safe for concurrent use; the sets it returns are
// immutable.
type setBuilder struct {
	tag    string // "" for every instance
	ttl    uint32
	tagged int               // instances with tag, serving or not
	steps  int               // instances and chunks looked at, over the builder's life
	svc    *registry.Service // the version built
	set    *answerSet        // its answers

	// Targets are append-only: a published set may reference any of them,
	// so a target whose last instance went stays, unreferenced, until the
	// next rebuild (dead counts them).
	targets  []srvTarget
	targetOf map[netip.Addr]int32 // live targets by address
	tRefs    []int32              // instances at each target's address
	tRec     []int32              // each live target's record in a or aaaa
	aOwner   []int32              // the target of each A record
	aaaaOwn  []int32              // the target of each AAAA record
	dead     int

	srvOf   map[srvKey]int32 // SRV records by target and port
	srvKeys []srvKey         // the key of each SRV record
	srvRefs []int32          // instances behind each SRV record
	srvW    []uint64         // their summed weights

	// The records of the version being built. set shares their blocks
	// once published; the writers copy a block before they change it.
	a, aaaa blockWriter[byte]
	srv     blockWriter[srvRec]
	changed bool // since the last publish
}

// smallService is the size up to which a set is built from scratch for
// each version, and the builder keeps only the set: most services are
// small, and their builders would cost the cache more memory than the
// rebuilds cost time.
const smallService = 64

type srvKey struct {
	target int32
	port   uint16
}

func newSetBuilder(tag string, ttl uint32) *setBuilder {
	return &setBuilder{tag: tag, ttl: ttl}
}

// reset empties the builder for a build of svc from scratch.
func (b *setBuilder) reset(svc *registry.Service) {
	*b = setBuilder{tag: b.tag, ttl: b.ttl, steps: b.steps, svc: svc, targetOf: map[netip.Addr]int32{}, srvOf: map[srvKey]int32{}}
	b.a.l, b.aaaa.l, b.srv.l = newBlockList[byte](aRecLen), newBlockList[byte](aaaaRecLen), newBlockList[srvRec](1)
}

// counts reports whether in is in the set.
func (b *setBuilder) counts(in *registry.Instance) bool {
	return in != nil && in.Serving() && (b.tag == "" || in.HasTag(b.tag))
}

// update brings the set to svc and returns it.
func (b *setBuilder) update(svc *registry.Service) *answerSet {
	if b.svc == svc {
		return b.set
	}
	if svc.Len() <= smallService {
		// Cheaper to build than to keep what an update needs.
		set := b.rebuild(svc)
		*b = setBuilder{tag: b.tag, ttl: b.ttl, tagged: b.tagged, steps: b.steps, svc: svc, set: set}
		return set
	}
	if b.targetOf == nil || b.dead > len(b.targetOf)+64 {
		return b.rebuild(svc)
	}
	// When most of the service changed, a rebuild costs less than the diff.
	limit := svc.Len()/2 + 64
	differ := 0 // instances that differ between the versions
	b.steps += diffServices(b.svc, svc, func(old, cur *registry.Instance) bool {
		if differ++; differ > limit {
			return false
		}
		if b.tag != "" {
			b.tagged += hasTag(cur, b.tag) - hasTag(old, b.tag)
		}
		was, is := b.counts(old), b.counts(cur)
		if !was && !is {
			return true
		}
		b.changed = true
		if was {
			b.remove(old)
		}
		if is {
			b.add(cur)
		}
		return true
	})
	if differ > limit {
		return b.rebuild(svc)
	}
	b.svc = svc
	if b.changed {
		b.publish()
	}
	return b.set
}

// rebuild builds the set of svc from scratch.
func (b *setBuilder) rebuild(svc *registry.Service) *answerSet {
	b.reset(svc)
	b.steps += svc.Len()
	for in := range svc.All() {
		if b.tag != "" {
			b.tagged += hasTag(in, b.tag)
		}
		if b.counts(in) {
			b.add(in)
		}
	}
	b.publish()
	return b.set
}

// hasTag is 1 if in is not nil and has tag, else 0.
func hasTag(in *registry.Instance, tag string) int {
	if in != nil && in.HasTag(tag) {
		return 1
	}
	return 0
}

func (b *setBuilder) publish() {
	n := len(b.targets)
	b.set = &answerSet{a: b.a.publish(), aaaa: b.aaaa.publish(), srv: b.srv.publish(), targets: b.targets[:n:n]}
	b.changed = false
}

// add counts in's address and port.
func (b *setBuilder) add(in *registry.Instance) {
	t, ok := b.targetOf[in.Address]
	if !ok {
		t = int32(len(b.targets))
		b.targetOf[in.Address] = t
		b.targets = append(b.targets, newTarget(in.Address, b.ttl))
		b.tRefs = append(b.tRefs, 0)
		rec := append([]byte{0xC0, 12}, b.targets[t].rr...) // owned by the question name
		if in.Address.Is4() {
			b.tRec = append(b.tRec, int32(len(b.aOwner)))
			b.aOwner = append(b.aOwner, t)
			b.a.push(rec)
		} else {
			b.tRec = append(b.tRec, int32(len(b.aaaaOwn)))
			b.aaaaOwn = append(b.aaaaOwn, t)
			b.aaaa.push(rec)
		}
	}
	b.tRefs[t]++
	// One SRV record per distinct target and port: instances that share
	// both add their weights to it.
	k := srvKey{t, in.Port}
	i, ok := b.srvOf[k]
	if !ok {
		i = int32(b.srv.l.n)
		b.srvOf[k] = i
		var r srvRec
		binary.BigEndian.PutUint16(r.rdata[0:], srvPriority)
		binary.BigEndian.PutUint16(r.rdata[4:], in.Port)
		r.target = int(t)
		b.srv.push([]srvRec{r})
		b.srvKeys = append(b.srvKeys, k)
		b.srvRefs = append(b.srvRefs, 0)
		b.srvW = append(b.srvW, 0)
	}
	b.srvRefs[i]++
	b.setWeight(i, b.srvW[i]+uint64(in.Weight))
}

// remove takes back what add(in) counted.
func (b *setBuilder) remove(in *registry.Instance) {
	t := b.targetOf[in.Address]
	k := srvKey{t, in.Port}
	i := b.srvOf[k]
	if b.srvRefs[i]--; b.srvRefs[i] > 0 {
		b.setWeight(i, b.srvW[i]-uint64(in.Weight))
	} else {
		// Move the last record into its place.
		last := int32(b.srv.removeSwap(int(i)))
		b.srvKeys[i], b.srvRefs[i], b.srvW[i] = b.srvKeys[last], b.srvRefs[last], b.srvW[last]
		b.srvOf[b.srvKeys[i]] = i
		b.srvKeys, b.srvRefs, b.srvW = b.srvKeys[:last], b.srvRefs[:last], b.srvW[:last]
		delete(b.srvOf, k)
	}
	if b.tRefs[t]--; b.tRefs[t] > 0 {
		return
	}
	delete(b.targetOf, in.Address)
	b.dead++
	if in.Address.Is4() {
		b.aOwner = b.dropRecord(&b.a, b.aOwner, b.tRec[t])
	} else {
		b.aaaaOwn = b.dropRecord(&b.aaaa, b.aaaaOwn, b.tRec[t])
	}
}

// dropRecord removes address record r by moving the last one into its
// place.
func (b *setBuilder) dropRecord(recs *blockWriter[byte], owner []int32, r int32) []int32 {
	last := recs.removeSwap(int(r))
	owner[r] = owner[last]
	b.tRec[owner[r]] = r
	return owner[:last]
}

func (b *setBuilder) setWeight(i int32, w uint64) {
	b.srvW[i] = w
	r := b.srv.l.rec(int(i))[0]
	if binary.BigEndian.PutUint16(r.rdata[2:], uint16(min(w, 0xFFFF))); r != b.srv.l.rec(int(i))[0] {
		b.srv.set(int(i), []srvRec{r})
	}
}

// diffServices calls f(old, cur) for each instance ID whose instance differs
// between versions a and b of a service (nil where it is absent), in ID
// order, until f returns false. Chunks the versions share are skipped, so
// the cost is that of the chunks that changed, plus one step per chunk. It
// returns the steps taken: instances and chunks looked at.
func diffServices(a, b *registry.Service, f func(old, cur *registry.Instance) bool) (steps int) {
	ac, bc := a.Chunks(), b.Chunks()
	var x, y []*registry.Instance // the rest of the chunks being compared
	for {
		if len(x) == 0 && len(y) == 0 {
			for len(ac) > 0 && len(bc) > 0 && sameChunk(ac[0], bc[0]) {
				ac, bc, steps = ac[1:], bc[1:], steps+1
			}
		}
		if len(x) == 0 && len(ac) > 0 {
			x, ac = ac[0], ac[1:]
		}
		if len(y) == 0 && len(bc) > 0 {
			y, bc = bc[0], bc[1:]
		}
		var ok bool
		steps++
		switch {
		case len(x) == 0 && len(y) == 0:
			return steps
		case len(y) == 0 || len(x) > 0 && x[0].ID < y[0].ID:
			ok, x = f(x[0], nil), x[1:]
		case len(x) == 0 || y[0].ID < x[0].ID:
			ok, y = f(nil, y[0]), y[1:]
		default:
			ok = true
			if x[0] != y[0] {
				ok = f(x[0], y[0])
			}
			x, y = x[1:], y[1:]
		}
		if !ok {
			return steps
		}
	}
}

func sameChunk(x, y []*registry.Instance) bool {
	return len(x) == len(y) && &x[0] == &y[0]
}
