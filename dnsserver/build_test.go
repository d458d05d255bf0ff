package dnsserver

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

// renderSet builds the answer set of the serving instances of svc that
// carry tag (any instance if tag is empty).
func renderSet(svc *registry.Service, tag string, ttl uint32) *answerSet {
	s := &flatSet{}
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
	return s.blocks()
}

// flatSet is an answer set in plain arrays, as renderSet builds it.
type flatSet struct {
	a, aaaa []byte
	srv     []srvRec
	targets []srvTarget
}

// blocks returns the answer set of f.
func (f *flatSet) blocks() *answerSet {
	var a, aaaa blockWriter[byte]
	var srv blockWriter[srvRec]
	a.l, aaaa.l, srv.l = newBlockList[byte](aRecLen), newBlockList[byte](aaaaRecLen), newBlockList[srvRec](1)
	for i := 0; i < len(f.a); i += aRecLen {
		a.push(f.a[i : i+aRecLen])
	}
	for i := 0; i < len(f.aaaa); i += aaaaRecLen {
		aaaa.push(f.aaaa[i : i+aaaaRecLen])
	}
	for i := range f.srv {
		srv.push(f.srv[i : i+1])
	}
	return &answerSet{a: a.publish(), aaaa: aaaa.publish(), srv: srv.publish(), targets: f.targets}
}

// canonical lists a set's records in a fixed order, with each SRV record's
// target spelled out, so that two sets with the same records compare equal
// whatever their order.
func canonical(s *answerSet) []string {
	var out []string
	out = append(out, blockShape(s.a), blockShape(s.aaaa), blockShape(s.srv))
	for i := range s.a.n {
		out = append(out, "A "+hex.EncodeToString(s.a.rec(i)))
	}
	for i := range s.aaaa.n {
		out = append(out, "AAAA "+hex.EncodeToString(s.aaaa.rec(i)))
	}
	for i := range s.srv.n {
		r := s.srv.rec(i)[0]
		t := s.targets[r.target]
		out = append(out, fmt.Sprintf("SRV %d %d %d %s %x", binary.BigEndian.Uint16(r.rdata[0:]), binary.BigEndian.Uint16(r.rdata[2:]),
			binary.BigEndian.Uint16(r.rdata[4:]), t.label, t.rr))
	}
	slices.Sort(out)
	return out
}

// blockShape is "" if every block of l but the last is full and the
// blocks hold l.n records, else a description of what is wrong.
func blockShape[T any](l blockList[T]) string {
	total := 0
	for i, b := range l.blocks {
		if len(b)%l.unit != 0 || len(b) == 0 || i < len(l.blocks)-1 && len(b) != blockRecords*l.unit {
			return fmt.Sprintf("block %d of %d holds %d elements", i, len(l.blocks), len(b))
		}
		total += len(b) / l.unit
	}
	if total != l.n {
		return fmt.Sprintf("blocks hold %d records, n is %d", total, l.n)
	}
	return ""
}

// TestSetBuilderMatchesRender churns a service, through the registry, with
// registrations, deregistrations, weight, status and tag changes that share
// addresses and ports, and after each step checks that the answer sets the
// builders keep up to date hold exactly the records a render from scratch
// holds, for every instance and for one tag. The service grows past a few
// chunks, so that changes split and merge them, and batches of changes come
// between some updates.
func TestSetBuilderMatchesRender(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(1, 2))
	all, blue := newSetBuilder("", 5), newSetBuilder("blue", 5)
	ids := map[string]bool{}
	var versions []*registry.Service
	type kept struct {
		set   *answerSet
		canon []string
	}
	var published []kept // sets queries may still be reading: never written again
	check := func(step int) {
		t.Helper()
		svc := f.reg.Snapshot().Service("web")
		if svc == nil {
			return
		}
		versions = append(versions, svc)
		for _, b := range []*setBuilder{all, blue} {
			set := b.update(svc)
			got, want := canonical(set), canonical(renderSet(svc, b.tag, 5))
			if step%50 == 0 {
				published = append(published, kept{set, got})
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d, tag %q: the builder's %d records differ from a render's %d:\n got %v\nwant %v", step, b.tag, len(got), len(want), got, want)
			}
		}
		n := 0
		for in := range svc.All() {
			if in.HasTag("blue") {
				n++
			}
		}
		if blue.tagged != n {
			t.Fatalf("step %d: the blue builder counts %d tagged instances, the service has %d", step, blue.tagged, n)
		}
	}
	register := func() {
		id := fmt.Sprintf("web-%04d", rng.IntN(1500))
		in := &registry.Instance{Service: "web", ID: id, Port: uint16(8000 + rng.IntN(3)), Weight: uint32(rng.IntN(4))}
		if rng.IntN(4) == 0 {
			in.Address = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(50))})
		} else {
			in.Address = netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(3)), byte(rng.IntN(200))})
		}
		if rng.IntN(3) == 0 {
			in.Tags = []string{"blue"}
		}
		if rng.IntN(5) == 0 {
			in.Status = registry.StatusDraining
		}
		if in.Weight == 0 {
			in.Weight = registry.DefaultWeight
		}
		if rng.IntN(10) == 0 {
			in.Weight = 40000 // two on one address and port sum past the 16 bits of an SRV weight
		}
		if _, err := f.reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	for range 1200 {
		register()
	}
	check(0)
	for step := 1; step <= 600; step++ {
		for range 1 + rng.IntN(3)*rng.IntN(4) { // mostly one change, sometimes a batch
			if rng.IntN(3) == 0 && len(ids) > 0 {
				for id := range ids { // any one
					if _, err := f.reg.Deregister(t.Context(), registry.Key{Service: "web", ID: id}); err != nil {
						t.Fatal(err)
					}
					delete(ids, id)
					break
				}
			} else {
				register()
			}
		}
		check(step)
	}
	for i, k := range published {
		if got := canonical(k.set); !slices.Equal(got, k.canon) {
			t.Fatalf("published set %d changed after later updates", i)
		}
	}
	// Back to an older version, and forward again.
	for _, svc := range []*registry.Service{versions[len(versions)/2], versions[len(versions)-1], versions[0]} {
		for _, b := range []*setBuilder{all, blue} {
			if got, want := canonical(b.update(svc)), canonical(renderSet(svc, b.tag, 5)); !slices.Equal(got, want) {
				t.Fatalf("moving tag %q to the version at revision %d: %d records, a render has %d", b.tag, svc.Rev, len(got), len(want))
			}
		}
	}
}

// TestSetBuilderAcrossSmallService: a service growing past smallService and
// shrinking back, so that the builder switches between building each
// version from scratch and updating, keeps the answers of a render.
func TestSetBuilderAcrossSmallService(t *testing.T) {
	f := newFixture(t)
	all, blue := newSetBuilder("", 5), newSetBuilder("blue", 5)
	check := func(what string) {
		t.Helper()
		svc := f.reg.Snapshot().Service("tiny")
		if svc == nil {
			return
		}
		for _, b := range []*setBuilder{all, blue} {
			if got, want := canonical(b.update(svc)), canonical(renderSet(svc, b.tag, 5)); !slices.Equal(got, want) {
				t.Fatalf("%s (%d instances), tag %q: %v, a render has %v", what, svc.Len(), b.tag, got, want)
			}
		}
	}
	const n = 2*smallService + 10
	for i := range n {
		opts := []func(*registry.Instance){withWeight(uint32(1 + i%3))}
		if i%2 == 0 {
			opts = append(opts, withTags("blue"))
		}
		f.add(t, "tiny", fmt.Sprint("t-", i), fmt.Sprintf("10.3.0.%d", i%40), uint16(80+i%2), opts...)
		check(fmt.Sprint("registering ", i))
	}
	for i := range n - 1 {
		if _, err := f.reg.Deregister(t.Context(), registry.Key{Service: "tiny", ID: fmt.Sprint("t-", i)}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprint("deregistering ", i))
	}
}
