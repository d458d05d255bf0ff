package registry

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkRegisterStorm registers 10,000 instances into one node's registry,
// spread over a varying number of services: the cost of a deploy storm on
// one node, copy-on-write snapshots included.
func BenchmarkRegisterStorm(b *testing.B) {
	for _, services := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			ins := make([]*Instance, 10000)
			for i := range ins {
				ins[i] = &Instance{Service: fmt.Sprintf("svc-%d", i%services), ID: fmt.Sprintf("i-%d", i),
					Address: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 80, Weight: 1}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r, err := New(Config{Node: "n1"})
				if err != nil {
					b.Fatal(err)
				}
				for _, in := range ins {
					if _, err := r.Register(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				r.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/registration")
		})
	}
}
