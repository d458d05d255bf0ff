package main

// Cluster benchmarks (issue 3): propagation from a register call on node A to
// node E's registry, Watch stream and DNS answer; failure removal after a
// hard kill with the default cluster config; and a registration storm.
//
// The nodes run in-process (one registry, pushsvc gRPC server, DNS server and
// Serf member each, on 127.0.0.1 with free ports), because they need no agent
// binary; they talk to each other only over loopback sockets, as processes
// would. Peak RSS is therefore the whole process's, not one node's.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/dnsserver"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// dnsPollGap spaces the DNS polls for one name, so that the poller does not
// starve the nodes of CPU; it is the resolution of the DNS figures.
const dnsPollGap = 100 * time.Microsecond

func init() {
	register("cluster/propagation", benchClusterPropagation)
	register("cluster/failure-removal", benchClusterFailure)
	register("cluster/storm", benchClusterStorm)
}

// clNode is one in-process Herald node.
type clNode struct {
	name   string
	reg    *registry.Registry
	cl     *cluster.Cluster
	push   *pushsvc.Server
	gs     *grpc.Server
	dns    *dnsserver.Server
	conn   *grpc.ClientConn
	api    heraldpb.HeraldClient
	killed bool
}

func clLogger() *slog.Logger {
	if os.Getenv("HERALD_BENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startClNode starts a node with the default cluster config (free ports).
func startClNode(ctx context.Context, name string, join []string) (*clNode, error) {
	n := &clNode{name: name}
	ok := false
	defer func() {
		if !ok {
			n.kill()
		}
	}()
	var err error
	if n.reg, err = registry.New(registry.Config{Node: name}); err != nil {
		return nil, err
	}
	log := clLogger()
	pcfg := pushsvc.DefaultConfig()
	pcfg.Registry, pcfg.Logger = n.reg, log
	if n.push, err = pushsvc.New(pcfg); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ccfg := cluster.DefaultConfig(n.reg)
	ccfg.BindAddr = "127.0.0.1:0"
	ccfg.Join = join
	ccfg.GRPCAddr = lis.Addr().String()
	ccfg.Logger = log
	if n.cl, err = cluster.New(ccfg); err != nil {
		lis.Close()
		return nil, err
	}
	n.gs = n.push.NewGRPCServer()
	n.cl.RegisterGRPC(n.gs)
	go n.gs.Serve(lis)
	dcfg := dnsserver.DefaultConfig()
	dcfg.Addr, dcfg.Source, dcfg.Logger = "127.0.0.1:0", n.reg, log
	if n.dns, err = dnsserver.New(dcfg); err != nil {
		return nil, err
	}
	if err := n.dns.Start(ctx); err != nil {
		return nil, err
	}
	if err := n.cl.Start(ctx); err != nil {
		return nil, err
	}
	if n.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	n.api = heraldpb.NewHeraldClient(n.conn)
	ok = true
	return n, nil
}

// kill stops the node without leaving the cluster, like kill -9: its
// sockets close and peers must detect the failure.
func (n *clNode) kill() {
	if n.killed {
		return
	}
	n.killed = true
	if n.conn != nil {
		n.conn.Close()
	}
	if n.cl != nil {
		n.cl.Shutdown()
	}
	if n.push != nil {
		n.push.Close()
	}
	if n.gs != nil {
		n.gs.Stop()
	}
	if n.dns != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.dns.Shutdown(sctx)
		cancel()
	}
	if n.reg != nil {
		n.reg.Close()
	}
}

// startClCluster starts size nodes, each joining the first, and waits until
// every node sees all of them alive.
func startClCluster(ctx context.Context, size int) ([]*clNode, error) {
	var nodes []*clNode
	fail := func(err error) ([]*clNode, error) {
		for _, n := range nodes {
			n.kill()
		}
		return nil, err
	}
	for i := range size {
		var join []string
		if i > 0 {
			join = []string{nodes[0].cl.LocalAddr()}
		}
		n, err := startClNode(ctx, string(rune('a'+i)), join)
		if err != nil {
			return fail(fmt.Errorf("start node %d: %w", i, err))
		}
		nodes = append(nodes, n)
	}
	err := clWaitUntil(ctx, 10*time.Second, func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.cl.Members() {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != size {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fail(fmt.Errorf("cluster did not form: %w", err))
	}
	return nodes, nil
}

// clWaitUntil polls cond every millisecond until it holds, ctx ends or the
// timeout passes.
func clWaitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

func clRegRequest(service, id string) *heraldpb.RegisterRequest {
	return &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{Service: service, Id: id, Address: "10.1.2.3", Port: 8080}}
}

// clQuantiles returns p50, p99 and max of ds.
func clQuantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func clFmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// benchClusterPropagation registers 1,000 instances one at a time through
// node A's gRPC API and times their arrival on node E: in its registry, in a
// Watch stream and in its DNS answer.
func benchClusterPropagation(ctx context.Context, _ *benchEnv) error {
	const count = 1000
	nodes, err := startClCluster(ctx, 5)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	a, e := nodes[0], nodes[4]

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := e.api.Watch(wctx, &heraldpb.WatchRequest{})
	if err != nil {
		return fmt.Errorf("watch on E: %w", err)
	}
	if _, err := watch.Recv(); err != nil { // the initial snapshot
		return fmt.Errorf("watch on E: %w", err)
	}
	var mu sync.Mutex
	watchSeen := map[string]time.Time{}
	watchCh := make(chan struct{}, 1)
	go func() {
		for {
			resp, err := watch.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for _, ev := range resp.GetEvents() {
				if ev.GetOp() == heraldpb.Event_OP_UPSERT {
					watchSeen[ev.GetInstance().GetService()] = now
				}
			}
			mu.Unlock()
			select {
			case watchCh <- struct{}{}:
			default:
			}
		}
	}()

	dc := &dns.Client{Net: "udp", Timeout: time.Second}
	dconn, err := dc.DialContext(ctx, e.dns.Addr())
	if err != nil {
		return fmt.Errorf("dns on E: %w", err)
	}
	defer dconn.Close()

	var regLat, watchLat, dnsLat []time.Duration
	for i := range count {
		svc := fmt.Sprintf("p%04d", i)
		snap := e.reg.Snapshot()
		start := time.Now()
		// The registry and DNS pollers run while the call is in flight.
		regDone := make(chan time.Duration, 1)
		go func() {
			for s := snap; ; {
				if s.Service(svc) != nil {
					regDone <- time.Since(start)
					return
				}
				select {
				case <-s.Changed():
					s = e.reg.Snapshot()
				case <-time.After(2 * time.Second):
					regDone <- -1
					return
				}
			}
		}()
		dnsDone := make(chan time.Duration, 1)
		go func() {
			q := new(dns.Msg)
			q.SetQuestion(svc+".service.herald.", dns.TypeA)
			for time.Since(start) < 2*time.Second {
				r, _, err := dc.ExchangeWithConnContext(ctx, q, dconn)
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
					dnsDone <- time.Since(start)
					return
				}
				time.Sleep(dnsPollGap)
			}
			dnsDone <- -1
		}()
		if _, err := a.api.Register(ctx, clRegRequest(svc, "i1")); err != nil {
			return fmt.Errorf("register %s on A: %w", svc, err)
		}
		rl, dl := <-regDone, <-dnsDone
		if rl < 0 || dl < 0 {
			return fmt.Errorf("%s did not reach E within 2s (registry %v, dns %v)", svc, rl, dl)
		}
		var wt time.Time
		if err := clWaitUntil(ctx, 2*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			t, ok := watchSeen[svc]
			wt = t
			return ok
		}); err != nil {
			return fmt.Errorf("%s did not reach E's watch: %w", svc, err)
		}
		regLat, dnsLat, watchLat = append(regLat, rl), append(dnsLat, dl), append(watchLat, wt.Sub(start))
	}
	fmt.Printf("5 in-process nodes on loopback (default cluster config), %d registrations via gRPC on A, one at a time; %s\n", count, clLoad())
	fmt.Printf("%-28s %10s %10s %10s %10s\n", "arrival on E", "p50", "p99", "max", "target p99")
	for _, row := range []struct {
		name   string
		ds     []time.Duration
		target string
	}{
		{"registry snapshot", regLat, "-"},
		{"gRPC Watch stream", watchLat, "5ms"},
		{"DNS answer (UDP A)", dnsLat, "10ms"},
	} {
		p50, p99, mx := clQuantiles(row.ds)
		fmt.Printf("%-28s %10s %10s %10s %10s\n", row.name, clFmtDur(p50), clFmtDur(p99), clFmtDur(mx), row.target)
	}
	return nil
}

// benchClusterFailure kills an owner hard and times until its instances are
// gone from every other node, with the default config.
func benchClusterFailure(ctx context.Context, _ *benchEnv) error {
	const trials = 5
	fmt.Printf("5 in-process nodes, default config (probe 500ms/200ms, suspicion x3, gossip 100ms, reap-failed 500ms); owner killed without leave\n")
	fmt.Printf("%-8s %14s %14s\n", "trial", "first node", "last node")
	var worst time.Duration
	for trial := 1; trial <= trials; trial++ {
		nodes, err := startClCluster(ctx, 5)
		if err != nil {
			return err
		}
		victim, others := nodes[4], nodes[:4]
		for i := range 10 {
			if _, err := victim.api.Register(ctx, clRegRequest("doomed", fmt.Sprintf("d%d", i))); err != nil {
				return err
			}
		}
		err = clWaitUntil(ctx, 5*time.Second, func() bool {
			for _, n := range others {
				if s := n.reg.Snapshot().Service("doomed"); s == nil || len(s.Instances) != 10 {
					return false
				}
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("instances did not replicate: %w", err)
		}
		start := time.Now()
		victim.kill()
		gone := make([]time.Duration, len(others))
		err = clWaitUntil(ctx, 30*time.Second, func() bool {
			all := true
			for i, n := range others {
				if gone[i] == 0 {
					if n.reg.Snapshot().Service("doomed") == nil {
						gone[i] = time.Since(start)
					} else {
						all = false
					}
				}
			}
			return all
		})
		for _, n := range nodes {
			n.kill()
		}
		if err != nil {
			return fmt.Errorf("trial %d: instances not removed: %w", trial, err)
		}
		first, last := slices.Min(gone), slices.Max(gone)
		worst = max(worst, last)
		fmt.Printf("%-8d %14s %14s\n", trial, clFmtDur(first), clFmtDur(last))
	}
	fmt.Printf("worst: %s (target <= 5s); %s\n", clFmtDur(worst), clLoad())
	return nil
}

// benchClusterStorm sends 10,000 registrations in one burst from concurrent
// clients spread over 3 nodes, while DNS is probed on every node.
func benchClusterStorm(ctx context.Context, _ *benchEnv) error {
	const (
		total   = 10000
		clients = 256
	)
	nodes, err := startClCluster(ctx, 3)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	// DNS probers: every node must keep answering during the storm.
	pctx, stopProbe := context.WithCancel(ctx)
	var probes, probeFails atomic.Int64
	var pwg sync.WaitGroup
	defer func() { stopProbe(); pwg.Wait() }()
	for _, n := range nodes {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			dc := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
			q := new(dns.Msg)
			q.SetQuestion(n.name+".node.herald.", dns.TypeA)
			for pctx.Err() == nil {
				r, _, err := dc.ExchangeContext(pctx, q, n.dns.Addr())
				if pctx.Err() != nil {
					return
				}
				probes.Add(1)
				if err != nil || r.Rcode != dns.RcodeSuccess {
					probeFails.Add(1)
				}
				select {
				case <-pctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	if path := os.Getenv("HERALD_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := nodes[c%len(nodes)].api
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				svc := fmt.Sprintf("storm-%02d", i%50)
				if _, err := api.Register(ctx, clRegRequest(svc, fmt.Sprintf("i%05d", i))); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	converged := make([]time.Duration, len(nodes))
	err = clWaitUntil(ctx, 30*time.Second, func() bool {
		all := true
		for i, n := range nodes {
			if converged[i] == 0 {
				if _, inst := n.reg.Snapshot().Len(); inst == total {
					converged[i] = time.Since(start) - elapsed
				} else {
					all = false
				}
			}
		}
		return all
	})
	stopProbe()
	pwg.Wait()
	if err != nil {
		return fmt.Errorf("storm did not converge: %w", err)
	}
	var members []string
	for _, n := range nodes {
		for _, m := range n.cl.Members() {
			if m.Status != "alive" {
				members = append(members, n.name+" sees "+m.Name+" "+m.Status)
			}
		}
	}
	fmt.Printf("3 in-process nodes, %d registrations via gRPC from %d concurrent clients; %s\n", total, clients, clLoad())
	fmt.Printf("%-34s %s\n", "burst duration", clFmtDur(elapsed))
	fmt.Printf("%-34s %.0f registrations/s (target 10000/s)\n", "rate", float64(total)/elapsed.Seconds())
	fmt.Printf("%-34s %d\n", "failed registrations", failed.Load())
	if p := firstErr.Load(); p != nil {
		fmt.Printf("%-34s %v\n", "first failure", *p)
	}
	for i, n := range nodes {
		fmt.Printf("%-34s %s\n", "node "+n.name+" converged after last call", clFmtDur(converged[i]))
	}
	fmt.Printf("%-34s %d probes, %d failed\n", "DNS probes during the storm", probes.Load(), probeFails.Load())
	fmt.Printf("%-34s %s\n", "members not alive afterwards", clOr(strings.Join(members, "; "), "none (no false positives)"))
	fmt.Printf("%-34s %s (whole process: all 3 nodes + clients)\n", "peak RSS", clPeakRSS())
	if failed.Load() > 0 {
		return errors.New("some registrations failed")
	}
	return nil
}

func clOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clPeakRSS reads VmHWM from /proc/self/status.
func clPeakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

// clLoad describes the machine's load, which the tail latencies depend on.
func clLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load unknown"
	}
	return fmt.Sprintf("load average %s %s %s on %d CPUs", f[0], f[1], f[2], runtime.NumCPU())
}
