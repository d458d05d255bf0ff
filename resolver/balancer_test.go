package resolver

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestScheduleTable(t *testing.T) {
	tests := []struct {
		weights []uint32
		want    []uint32 // occurrences per index in one cycle
		maxRun  int      // longest run of one index
	}{
		{[]uint32{1}, []uint32{1}, 1},
		{[]uint32{1, 1, 1}, []uint32{1, 1, 1}, 1},
		{[]uint32{1, 2, 5}, []uint32{1, 2, 5}, 2},
		{[]uint32{10, 20, 50}, []uint32{1, 2, 5}, 2},
		{[]uint32{5, 1, 1}, []uint32{5, 1, 1}, 3},
		{[]uint32{1 << 31, 1 << 30}, []uint32{2, 1}, 2},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			table := scheduleTable(tc.weights)
			got := make([]uint32, len(tc.weights))
			run, longest := 0, 0
			for i, x := range table {
				got[x]++
				if i > 0 && table[i-1] == x {
					run++
				} else {
					run = 1
				}
				longest = max(longest, run)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("counts %v, want %v (table %v)", got, tc.want, table)
			}
			if longest > tc.maxRun {
				t.Fatalf("a run of %d picks of one endpoint, want at most %d (table %v)", longest, tc.maxRun, table)
			}
		})
	}
	// Large, uneven weights are scaled to a bounded table that keeps the
	// ratio and gives every endpoint a slot.
	w := []uint32{1, 1000000, 3000000}
	table := scheduleTable(w)
	if len(table) > maxTableLen+len(w) {
		t.Fatalf("table of %d slots, want about %d", len(table), maxTableLen)
	}
	n := make([]int, 3)
	for _, x := range table {
		n[x]++
	}
	if n[0] < 1 || math.Abs(float64(n[2])/float64(n[1])-3) > 0.01 {
		t.Fatalf("scaled counts %v: want >= 1 slot each and a 1:3 ratio", n)
	}
}

func TestWeightedConfig(t *testing.T) {
	for _, js := range []string{`{}`, `{"ejectionSeconds": 0}`, `{"ejectionSeconds": 2.5}`} {
		if _, err := (weightedBuilder{}).ParseConfig([]byte(js)); err != nil {
			t.Errorf("%s: %v", js, err)
		}
	}
	for _, js := range []string{`{"ejectionSeconds": -1}`, `{"ejectionSeconds": 1e9}`, `{"ejectionSeconds": "x"}`, `[`} {
		if _, err := (weightedBuilder{}).ParseConfig([]byte(js)); err == nil {
			t.Errorf("%s: accepted, want an error", js)
		}
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		di   balancer.DoneInfo
		want bool
	}{
		{"ok", balancer.DoneInfo{}, false},
		{"trailer", balancer.DoneInfo{Err: status.Error(codes.Unavailable, "x"), Trailer: metadata.Pairs(RefusedTrailer, "draining")}, true},
		{"message", balancer.DoneInfo{Err: status.Error(codes.Unavailable, "herald: not registered")}, true},
		{"other unavailable", balancer.DoneInfo{Err: status.Error(codes.Unavailable, "connection reset")}, false},
		{"other code", balancer.DoneInfo{Err: status.Error(codes.Internal, "herald: draining")}, false},
	}
	for _, tc := range tests {
		if got := refused(tc.di); got != tc.want {
			t.Errorf("%s: refused = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// countHits sends n RPCs on cc and returns the answers per backend.
func countHits(t *testing.T, cc *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, err := echo(context.Background(), cc)
		if err != nil {
			t.Fatal(err)
		}
		got[name]++
	}
	return got
}

// TestWeightedShares: the default balancer of a herald target splits RPCs
// by registry weight; a weight change moves the split at the next push,
// without a new connection; a backend that stops gives its share to the
// others in proportion to their weights.
func TestWeightedShares(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	bs := []*backend{startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")}
	for i, w := range []uint32{1, 2, 5} {
		in := bs[i].instance()
		in.Weight = w
		register(t, reg, in)
	}
	cc, err := grpc.NewClient("herald://"+a.Addr()+"/echo", grpc.WithResolvers(NewBuilder(WithLogger(quiet))), grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// Wait until every backend is connected (the split only counts READY
	// ones).
	wait.Eventually(t, 5*time.Second, "all three answering", func() bool {
		return len(countHits(t, cc, 16)) == 3
	})
	// Exact up to the cycle the 800 RPCs end in.
	check := func(want map[string]int) {
		t.Helper()
		got := countHits(t, cc, 800)
		for _, name := range []string{"b1", "b2", "b3"} {
			if d := got[name] - want[name]; d < -1 || d > 1 {
				t.Fatalf("800 RPCs split %v, want %v (±1)", got, want)
			}
		}
	}
	check(map[string]int{"b1": 100, "b2": 200, "b3": 500})

	for i, w := range []uint32{5, 2, 1} {
		in := bs[i].instance()
		in.Weight = w
		register(t, reg, in)
	}
	wait.Eventually(t, 5*time.Second, "the new weights in use", func() bool {
		got := countHits(t, cc, 8)
		return got["b1"] == 5 && got["b3"] == 1
	})
	check(map[string]int{"b1": 500, "b2": 200, "b3": 100})
	for _, b := range bs {
		if n := b.accepts.Load(); n != 1 {
			t.Fatalf("%s accepted %d connections, want 1 (a weight change must not redial)", b.name, n)
		}
	}

	// b1 stops: its share goes to b2 and b3 at 2:1. RPCs that were sent
	// before the connection state changed may fail; count only from the
	// first clean split on.
	bs[0].gs.Stop()
	wait.Eventually(t, 5*time.Second, "b1 out of the rotation", func() bool {
		got := map[string]int{}
		for range 12 {
			name, err := echo(context.Background(), cc)
			if err != nil {
				return false
			}
			got[name]++
		}
		return got["b1"] == 0
	})
	check(map[string]int{"b2": 533, "b3": 267})
}

// TestRefusalRetriedElsewhere: a backend that the registry still lists but
// that refuses as a Herald guard does (Unavailable, "herald: draining")
// costs the caller nothing: the default retry policy sends the RPC to
// another backend, and the balancer takes the refusing one out of the
// rotation after its first refusal.
func TestRefusalRetriedElsewhere(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	good := startBackend(t, "good")
	var refusals atomic.Int32
	bad := startBackendWith(t, "bad", grpc.UnaryInterceptor(func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
		refusals.Add(1)
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RefusedTrailer, "draining"))
		return nil, status.Error(codes.Unavailable, "herald: draining")
	}))
	register(t, reg, good.instance())
	register(t, reg, bad.instance())
	cc, err := grpc.NewClient("herald://"+a.Addr()+"/echo", grpc.WithResolvers(NewBuilder(WithLogger(quiet))), grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	got := countHits(t, cc, 200) // fails the test on any error
	if got["good"] != 200 {
		t.Fatalf("answers %v, want all 200 from good", got)
	}
	if n := refusals.Load(); n < 1 || n > 2 {
		t.Fatalf("the refusing backend saw %d RPCs, want 1 (2 if both connected late): it should leave the rotation at its first refusal", n)
	}
}

// TestServiceConfigOverride: WithServiceConfig("") leaves the choice to the
// ClientConn's default service config (here round_robin, which ignores
// weights); a custom config replaces the default one.
func TestServiceConfigOverride(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	for i, w := range []uint32{1, 3} {
		in := startBackend(t, "b"+itoa(i+1)).instance()
		in.Weight = w
		register(t, reg, in)
	}
	tests := []struct {
		name string
		opts []grpc.DialOption
		sc   Option
		want map[string]int
	}{
		{"default", nil, nil, map[string]int{"b1": 100, "b2": 300}},
		{"none from the resolver", []grpc.DialOption{grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}, WithServiceConfig(""), map[string]int{"b1": 200, "b2": 200}},
		{"custom", nil, WithServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`), map[string]int{"b1": 200, "b2": 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ropts := []Option{WithLogger(quiet)}
			if tc.sc != nil {
				ropts = append(ropts, tc.sc)
			}
			opts := append([]grpc.DialOption{grpc.WithResolvers(NewBuilder(ropts...)), grpc.WithTransportCredentials(insecureCreds())}, tc.opts...)
			cc, err := grpc.NewClient("herald://"+a.Addr()+"/echo", opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			wait.Eventually(t, 5*time.Second, "both answering", func() bool { return len(countHits(t, cc, 8)) == 2 })
			got := countHits(t, cc, 400)
			for id, n := range tc.want {
				if d := got[id] - n; d < -2 || d > 2 {
					t.Fatalf("400 RPCs split %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestPickerWeightZeroAndEjection: an endpoint of weight 0 is never
// picked; a refusal takes an endpoint out of the rotation and the others
// share its picks.
func TestPickerWeightZeroAndEjection(t *testing.T) {
	p := readyPickerOf(t, BalancerName, 3, 2, func(i int) uint32 { return uint32(i) }) // weights 0, 1, 2
	counts := map[balancer.SubConn]int{}
	var refuse balancer.PickResult
	for range 300 {
		r, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		counts[r.SubConn]++
		if counts[r.SubConn] == 1 && len(counts) == 1 {
			refuse = r
		}
		r.Done(balancer.DoneInfo{})
	}
	var got []int
	for _, n := range counts {
		got = append(got, n)
	}
	if len(got) != 2 || got[0]+got[1] != 300 || min(got[0], got[1]) != 100 {
		t.Fatalf("picks per endpoint %v, want 100 and 200 (weights 1 and 2) and none for weight 0", got)
	}
	refuse.Done(balancer.DoneInfo{Err: status.Error(codes.Unavailable, "herald: draining")})
	for range 50 {
		r, err := p.Pick(balancer.PickInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if r.SubConn == refuse.SubConn {
			t.Fatal("an endpoint that refused was picked again within its ejection")
		}
	}
}
