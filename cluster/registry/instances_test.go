package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestServiceChunks applies random batches of upserts and removals to a
// service and checks, after each, that it holds exactly the reference view,
// sorted, in chunks within their bounds, and that the previous version was
// not changed by the update (it is shared with published snapshots).
func TestServiceChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	view := map[string]*Instance{}
	var svc *Service
	for step := range 3000 {
		var ids []string
		batch := 1 + rng.IntN(4)
		if step%500 == 0 {
			batch = 400 // a burst: rebuilds
		}
		for range batch {
			id := fmt.Sprintf("i-%05d", rng.IntN(3000))
			if rng.IntN(3) == 0 && step > 1500 || rng.IntN(5) == 0 {
				delete(view, id)
			} else {
				view[id] = &Instance{Service: "s", ID: id}
			}
			ids = append(ids, id)
		}
		var before []*Instance
		if svc != nil {
			before = svc.List()
		}
		prev := svc
		svc = serviceAfter(prev, "s", uint64(step), view, ids)
		if prev != nil && !slices.Equal(before, prev.List()) {
			t.Fatalf("step %d: the update changed the previous version", step)
		}
		want := make([]string, 0, len(view))
		for id := range view {
			want = append(want, id)
		}
		slices.Sort(want)
		var got []string
		for in := range svc.All() {
			got = append(got, in.ID)
		}
		if !slices.Equal(got, want) || svc.Len() != len(want) {
			t.Fatalf("step %d: got %d instances (Len %d), want %d", step, len(got), svc.Len(), len(want))
		}
		for i, c := range svc.chunks {
			if len(c) == 0 || len(c) > maxChunk || (len(c) < minChunk && len(svc.chunks) > 1 && i != len(svc.chunks)-1 && step%500 != 0) {
				t.Fatalf("step %d: chunk %d of %d holds %d", step, i, len(svc.chunks), len(c))
			}
		}
		if len(want) > 0 {
			probe := want[rng.IntN(len(want))]
			if in := svc.Instance(probe); in == nil || in.ID != probe {
				t.Fatalf("step %d: Instance(%q) = %v", step, probe, in)
			}
			var after []string
			for in := range svc.After(probe) {
				after = append(after, in.ID)
			}
			i, _ := slices.BinarySearch(want, probe)
			if !slices.Equal(after, want[i+1:]) {
				t.Fatalf("step %d: After(%q) yields %d, want %d", step, probe, len(after), len(want[i+1:]))
			}
		}
		if svc.Instance("zzz") != nil || svc.Instance("") != nil {
			t.Fatalf("step %d: found an absent id", step)
		}
		if !slices.IsSortedFunc(svc.List(), func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) }) {
			t.Fatalf("step %d: not sorted", step)
		}
	}
}
