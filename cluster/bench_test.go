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
		lat = append(lat, propagate(b, src, dst, fmt.Sprintf("b%06d", i)))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// propagate registers service on src and returns how long it took to
// reach dst's snapshot (at most 5s, or the benchmark fails).
func propagate(b *testing.B, src, dst *testNode, service string) time.Duration {
	snap := dst.reg.Snapshot()
	start := time.Now()
	register(b, src, service, "i")
	deadline := time.After(5 * time.Second)
	for snap.Service(service) == nil {
		select {
		case <-snap.Changed():
			snap = dst.reg.Snapshot()
		case <-deadline:
			b.Fatalf("%s did not reach %s", service, dst.name)
		}
	}
	return time.Since(start)
}

// reportLatency sorts lat and reports its p50 and p99 in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
