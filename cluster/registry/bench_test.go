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

// BenchmarkRegisterIntoLargeService registers one more instance into a
// service that already holds n: the cost of one update to a large service,
// which must not grow with n.
func BenchmarkRegisterIntoLargeService(b *testing.B) {
	for _, n := range []int{1000, 10000, 40000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			ctx := context.Background()
			r, err := New(Config{Node: "n1", MaxInstances: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			mk := func(i int) *Instance {
				return &Instance{Service: "big", ID: fmt.Sprintf("i-%08d", i),
					Address: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 80, Weight: 1}
			}
			for i := range n {
				if _, err := r.Register(ctx, mk(i*2)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// Insert between existing ids, then remove it again: the
				// service stays at n instances.
				in := mk(2*(i%n) + 1)
				if _, err := r.Register(ctx, in); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Deregister(ctx, Key{Service: "big", ID: in.ID}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
