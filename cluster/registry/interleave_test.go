package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRandomInterleavingsConverge writes a few keys through three nodes
// while their deltas travel in random order per owner stream: delayed,
// batched, lost (a gap, repaired with the owner's full state or a third
// node's copy of it), and crossed with full-state pushes. After a final
// full delivery every node must show, for each key, the acknowledged write
// with the highest stamp (ties: the higher owner name).
func TestRandomInterleavingsConverge(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { interleave(t, seed) })
	}
}

type ilWrite struct {
	stamp   Stamp
	node    string
	present bool
	port    uint16
	status  Status
}

func interleave(t *testing.T, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 13))
	base := time.Unix(1_700_000_000, 0)
	clk := &fakeClock{now: base}
	names := []string{"a", "b", "c"}
	regs := map[string]*Registry{}
	stores := map[string]*memStore{}
	epochs := map[string]uint64{}
	open := func(i int, n string) {
		skew := time.Duration(i-1) * 7 * time.Millisecond
		epochs[n]++
		regs[n] = newReg(t, n, func(c *Config) {
			c.Now = func() time.Time { return clk.Now().Add(skew) }
			c.Store, c.Epoch = stores[n], epochs[n]
		})
	}
	for i, n := range names {
		stores[n] = &memStore{data: map[Key]*Instance{}}
		open(i, n)
	}
	keys := []string{"k0", "k1", "k2"}
	best := map[string]ilWrite{}
	record := func(id string, w ilWrite) {
		if b, ok := best[id]; !ok || w.stamp > b.stamp || w.stamp == b.stamp && w.node > b.node {
			best[id] = w
		}
	}
	sent := map[[2]string]uint64{} // owner, receiver -> last seq delivered
	deliver := func(owner, to string, n int, skip bool) {
		src, dst := regs[owner], regs[to]
		k := [2]string{owner, to}
		if dst.Digest()[owner].Epoch != src.Epoch() {
			// A new epoch on either side: the sender starts with its full state.
			st, _ := src.OwnerState(owner)
			dst.ReplaceOwner(st)
			sent[k] = st.Version.Seq
		}
		if v := dst.Digest()[owner]; v.Epoch == src.Epoch() && v.Seq > sent[k] {
			sent[k] = v.Seq // a full state got it further
		}
		ds, err := src.LocalDeltasSince(sent[k], n)
		if err != nil || len(ds) == 0 {
			return
		}
		if skip && len(ds) > 1 {
			ds = ds[1:]
		}
		sent[k] = ds[len(ds)-1].Version.Seq
		if gaps := dst.Apply(ds); len(gaps) > 0 {
			// Repair from the owner or from the third node's copy.
			from := src
			if rng.IntN(2) == 0 {
				for _, n := range names {
					if n != owner && n != to {
						from = regs[n]
					}
				}
			}
			if st, ok := from.OwnerState(owner); ok {
				dst.ReplaceOwner(st)
			}
		}
	}
	for step := 0; step < 200; step++ {
		clk.Add(time.Duration(rng.IntN(3)) * time.Millisecond)
		node := names[rng.IntN(3)]
		r := regs[node]
		id := keys[rng.IntN(len(keys))]
		switch rng.IntN(10) {
		case 0, 1:
			in := inst("api", id, "10.0.0.1")
			in.Port = uint16(1 + rng.IntN(3))
			got, err := r.Register(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			record(id, ilWrite{got.Stamp, node, true, got.Port, got.Status})
		case 2:
			st, err := r.Deregister(ctx, Key{"api", id})
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			record(id, ilWrite{stamp: st, node: node})
		case 3:
			status := []Status{StatusPassing, StatusDraining, StatusWarning}[rng.IntN(3)]
			_, st, err := r.SetStatus(ctx, "api", id, status)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if st != 0 {
				in := r.Snapshot().Service("api").Instance(id)
				record(id, ilWrite{st, node, true, in.Port, in.Status})
			}
		case 5:
			if rng.IntN(4) != 0 {
				continue
			}
			if rng.IntN(2) == 0 {
				// kill -9: the store keeps what was committed so far (an
				// asynchronous commit of a takeover drop may be missing);
				// peers may or may not reap the node before it is back.
				stores[node] = stores[node].clone()
				r.Close()
				for _, to := range names {
					if to != node && rng.IntN(2) == 0 {
						regs[to].RemoveOwner(node)
					}
				}
				open(slices.Index(names, node), node)
				continue
			}
			// A graceful restart: drain (delivered to some peers), leave
			// (peers reap the node), restart from the store.
			r.DrainForShutdown()
			for _, to := range names {
				if to != node && rng.IntN(2) == 0 {
					deliver(node, to, 0, false)
				}
			}
			r.Close()
			for _, to := range names {
				if to != node {
					regs[to].RemoveOwner(node)
				}
			}
			open(slices.Index(names, node), node)
		case 4:
			to := names[rng.IntN(3)]
			if to != node {
				if st, ok := r.OwnerState(node); ok {
					regs[to].ReplaceOwner(st)
				}
			}
		default:
			owner, to := names[rng.IntN(3)], names[rng.IntN(3)]
			if owner != to {
				deliver(owner, to, 1+rng.IntN(3), rng.IntN(8) == 0)
			}
		}
	}
	// Heal: deliver everything, and run anti-entropy (pull an owner's
	// newer state), until nothing moves.
	for range 10 {
		for _, o := range names {
			for _, to := range names {
				if o == to {
					continue
				}
				deliver(o, to, 0, false)
				if regs[to].Digest()[o].Compare(regs[o].LocalVersion()) < 0 {
					st, _ := regs[o].OwnerState(o)
					regs[to].ReplaceOwner(st)
				}
			}
		}
	}
	for _, n := range names {
		for _, id := range keys {
			var got *Instance
			if svc := regs[n].Snapshot().Service("api"); svc != nil {
				got = svc.Instance(id)
			}
			w, ok := best[id]
			switch {
			case !ok || !w.present:
				if got != nil {
					t.Fatalf("seed %d: %s shows %s port %d %s owned by %s (stamp %v); the last write (%+v) removed it", seed, n, id, got.Port, got.Status, got.Owner, got.Stamp, w)
				}
			case got == nil:
				t.Fatalf("seed %d: %s lacks %s; the last write is %+v", seed, n, id, w)
			case got.Stamp != w.stamp || got.Owner != w.node || got.Port != w.port || got.Status != w.status:
				t.Fatalf("seed %d: %s shows %s port %d %s owned by %s (stamp %v); the last write is %+v", seed, n, id, got.Port, got.Status, got.Owner, got.Stamp, w)
			}
		}
	}
}

// clone copies the store's committed state, as a crash leaves it.
func (m *memStore) clone() *memStore {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &memStore{data: map[Key]*Instance{}, tombs: map[Key]Stamp{}, clock: m.clock}
	for k, in := range m.data {
		c.data[k] = in.Clone()
	}
	for k, st := range m.tombs {
		c.tombs[k] = st
	}
	return c
}
