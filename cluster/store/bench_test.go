package store

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

// BenchmarkReload opens a data dir that holds n instances of one service and
// starts a registry on it: the start-up reload, which must stay linear in n.
func BenchmarkReload(b *testing.B) {
	for _, n := range []int{10000, 40000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			st, err := Open(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			var batch registry.Batch
			for i := range n {
				batch.Puts = append(batch.Puts, &registry.Instance{Service: "big", ID: fmt.Sprintf("i-%08d", i),
					Address: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 80, Weight: 1,
					Status: registry.StatusPassing, Stamp: registry.Stamp(i + 1)})
			}
			if err := st.Commit(batch); err != nil {
				b.Fatal(err)
			}
			st.Close()
			epoch := uint64(1)
			for b.Loop() {
				st, err := Open(dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				epoch++
				r, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: epoch, MaxInstances: 1 << 20})
				if err != nil {
					b.Fatal(err)
				}
				if got := r.Snapshot().Service("big").Len(); got != n {
					b.Fatalf("reloaded %d instances, want %d", got, n)
				}
				r.Close()
				st.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/instance")
		})
	}
}
