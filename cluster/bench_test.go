package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkPropagation times one registration on node 1 until it is in node
// 5's snapshot, through the replication stream (no API server in between).
func BenchmarkPropagation(b *testing.B) {
	nodes := startCluster(b, 5, nodeOpts{})
	src, dst := nodes[0], nodes[4]
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc := fmt.Sprintf("b%06d", i)
		snap := dst.reg.Snapshot()
		start := time.Now()
		register(b, src, svc, "i")
		deadline := time.After(5 * time.Second)
		for snap.Service(svc) == nil {
			select {
			case <-snap.Changed():
				snap = dst.reg.Snapshot()
			case <-deadline:
				b.Fatalf("%s did not reach node 5", svc)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
