package resolver

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/herald-sd/herald/pushsvc/client"
)

// fakeBalancerCC is a balancer.ClientConn whose SubConns become READY as soon as
// they connect, so that a balancer's picker can be measured alone.
type fakeBalancerCC struct {
	balancer.ClientConn
	mu     sync.Mutex
	picker balancer.Picker
	state  connectivity.State
}

type noMetrics struct{ estats.MetricsRecorder }

func (noMetrics) RecordInt64Count(*estats.Int64CountHandle, int64, ...string)             {}
func (noMetrics) RecordFloat64Count(*estats.Float64CountHandle, float64, ...string)       {}
func (noMetrics) RecordInt64Histo(*estats.Int64HistoHandle, int64, ...string)             {}
func (noMetrics) RecordFloat64Histo(*estats.Float64HistoHandle, float64, ...string)       {}
func (noMetrics) RecordInt64Gauge(*estats.Int64GaugeHandle, int64, ...string)             {}
func (noMetrics) RecordInt64UpDownCount(*estats.Int64UpDownCountHandle, int64, ...string) {}
func (noMetrics) RegisterAsyncReporter(estats.AsyncMetricReporter, ...estats.AsyncMetric) func() {
	return func() {}
}

func (c *fakeBalancerCC) MetricsRecorder() estats.MetricsRecorder                  { return noMetrics{} }
func (c *fakeBalancerCC) Target() string                                           { return "bench" }
func (c *fakeBalancerCC) ResolveNow(grpcresolver.ResolveNowOptions)                {}
func (c *fakeBalancerCC) RemoveSubConn(balancer.SubConn)                           {}
func (c *fakeBalancerCC) UpdateAddresses(balancer.SubConn, []grpcresolver.Address) {}
func (c *fakeBalancerCC) UpdateState(s balancer.State) {
	c.mu.Lock()
	c.picker, c.state = s.Picker, s.ConnectivityState
	c.mu.Unlock()
}

func (c *fakeBalancerCC) NewSubConn(_ []grpcresolver.Address, o balancer.NewSubConnOptions) (balancer.SubConn, error) {
	return &fakeSubConn{listener: o.StateListener}, nil
}

type fakeSubConn struct {
	balancer.SubConn
	listener func(balancer.SubConnState)
}

func (s *fakeSubConn) Connect() {
	go func() {
		s.listener(balancer.SubConnState{ConnectivityState: connectivity.Connecting})
		s.listener(balancer.SubConnState{ConnectivityState: connectivity.Ready})
	}()
}
func (s *fakeSubConn) RegisterHealthListener(l func(balancer.SubConnState)) {
	go l(balancer.SubConnState{ConnectivityState: connectivity.Ready})
}
func (s *fakeSubConn) Shutdown()                              {}
func (s *fakeSubConn) UpdateAddresses([]grpcresolver.Address) {}

// readyPicker builds the named balancer over n endpoints (weights 1..n)
// and returns its picker once every endpoint is READY.
func readyPicker(b testing.TB, name string, n int) balancer.Picker {
	return readyPickerOf(b, name, n, n, func(i int) uint32 { return uint32(i + 1) })
}

// readyPickerOf is readyPicker with weights from weight(i), waiting until
// picks reach want endpoints.
func readyPickerOf(b testing.TB, name string, n, want int, weight func(int) uint32) balancer.Picker {
	cc := &fakeBalancerCC{}
	bal := balancer.Get(name).Build(cc, balancer.BuildOptions{})
	b.Cleanup(bal.Close)
	var st grpcresolver.State
	for i := range n {
		in := testInst(i)
		in.Weight = weight(i)
		a := newAddress(in)
		st.Addresses = append(st.Addresses, a)
		st.Endpoints = append(st.Endpoints, grpcresolver.Endpoint{Addresses: []grpcresolver.Address{a}, Attributes: a.BalancerAttributes})
	}
	if err := bal.UpdateClientConnState(balancer.ClientConnState{ResolverState: st}); err != nil {
		b.Fatal(err)
	}
	for range 10000 {
		cc.mu.Lock()
		p, s := cc.picker, cc.state
		cc.mu.Unlock()
		if s == connectivity.Ready && allPicked(p, want) {
			return p
		}
		testingYield()
	}
	b.Fatalf("%s: not every endpoint READY", name)
	return nil
}

// allPicked reports whether 4n² picks reach n distinct SubConns.
func allPicked(p balancer.Picker, n int) bool {
	seen := map[balancer.SubConn]bool{}
	for range 4 * n * n {
		r, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			return false
		}
		seen[r.SubConn] = true
	}
	return len(seen) == n
}

// BenchmarkPick compares one pick of herald_weighted with round_robin over
// the same READY endpoints.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 100} {
		for _, name := range []string{"round_robin", BalancerName} {
			b.Run(fmt.Sprintf("%s/endpoints=%d", name, n), func(b *testing.B) {
				p := readyPicker(b, name, n)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						r, err := p.Pick(balancer.PickInfo{})
						if err != nil {
							b.Error(err)
							return
						}
						if r.Done != nil {
							r.Done(balancer.DoneInfo{})
						}
					}
				})
			})
		}
	}
}

func testInst(i int) *client.Instance {
	return &client.Instance{Service: "echo", ID: fmt.Sprintf("e%d", i), Address: netip.MustParseAddr("127.0.0.1"), Port: uint16(10000 + i), Weight: uint32(i + 1), Status: client.StatusPassing}
}

func testingYield() { time.Sleep(time.Millisecond) }

// BenchmarkScheduleTable is the cost of the pick table a new picker builds
// (on every push and connectivity change) for 3, 100 and 1,000 endpoints
// of weights 1..n.
func BenchmarkScheduleTable(b *testing.B) {
	for _, n := range []int{3, 100, 1000} {
		w := make([]uint32, n)
		for i := range w {
			w[i] = uint32(i + 1)
		}
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				scheduleTable(w)
			}
		})
	}
}
