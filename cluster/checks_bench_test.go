package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/checks"
	"github.com/herald-sd/herald/cluster/registry"
)

// BenchmarkChecks10k: 10,000 instances on node 1 of 5, each with a TCP
// check (interval 10s, so 1,000 probes/s) against a real listener, beside
// the same cluster without checks. Once the probes have spread over a whole
// interval it reports the probes per second, the CPU the process used
// (cores: CPU time over wall time, all 5 nodes and the backend included)
// and the propagation p50/p99 of a registration from node 1 to node 5
// while the checks run.
//
//	go test -run '^$' -bench BenchmarkChecks10k -benchtime 200x ./cluster/
func BenchmarkChecks10k(b *testing.B) {
	for _, withChecks := range []bool{false, true} {
		name := "no-checks"
		if withChecks {
			name = "10k-tcp-checks"
		}
		b.Run(name, func(b *testing.B) { benchChecks(b, withChecks) })
	}
}

func benchChecks(b *testing.B, withChecks bool) {
	const instances, interval = 10000, 10 * time.Second
	nodes := startCluster(b, 5, nodeOpts{})
	src, dst := nodes[0], nodes[4]
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx := context.Background()
	for i := range instances {
		in := &registry.Instance{Service: fmt.Sprintf("svc%03d", i%100), ID: fmt.Sprintf("i%05d", i), Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
		if withChecks {
			in.Check = registry.Check{Kind: registry.CheckTCP, Target: backend.Addr().String(), Interval: interval, Timeout: time.Second}
		}
		if _, err := src.reg.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	r := checks.New(checks.Config{Source: src.reg, Writer: src.reg})
	r.Start()
	defer r.Close()
	if withChecks {
		time.Sleep(interval) // every check has started: steady probing from here
	}
	probes0, _ := r.Stats()
	cpu0, wall0 := cpuTime(), time.Now()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lat = append(lat, propagate(b, src, dst, fmt.Sprintf("p%06d", i)))
		time.Sleep(10 * time.Millisecond) // a steady trickle of writes, so the window spans the probing
	}
	b.StopTimer()
	wall := time.Since(wall0)
	probes, writes := r.Stats()
	b.ReportMetric(float64(probes-probes0)/wall.Seconds(), "probes/s")
	b.ReportMetric(float64(writes), "status-writes")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/wall.Seconds(), "cpu-cores")
	reportLatency(b, lat)
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
