package main

// Time to first RPC on a new backend: through the herald resolver (push)
// and through grpc-go's default dns:/// resolver against Herald's DNS server
// with TTL 5s, side by side. Everything runs in-process on loopback: one
// registry, the pushsvc gRPC server, the dnsserver, echo backends on
// 127.0.0.x sharing one port (the dns resolver takes the port from the
// target, A records give only addresses).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/dnsserver"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	heraldresolver "github.com/herald-sd/herald/resolver"
)

func init() { register("resolver-first-rpc", benchResolverFirstRPC) }

const (
	firstRPCRounds = 100              // herald measurements
	dnsWindow      = 15 * time.Second // how long the dns resolver gets
	firstRPCWait   = 5 * time.Second  // per herald round
)

func benchResolverFirstRPC(ctx context.Context, _ *benchEnv) error {
	quiet := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Config{Node: "bench"})
	if err != nil {
		return err
	}
	defer reg.Close()
	ps, err := pushsvc.New(pushsvc.Config{Registry: reg, Logger: quiet})
	if err != nil {
		return err
	}
	gs := ps.NewGRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ps.Close()
		return err
	}
	go gs.Serve(lis)
	defer func() { ps.Close(); gs.Stop() }()
	dcfg := dnsserver.DefaultConfig()
	dcfg.Addr, dcfg.TTL, dcfg.Source, dcfg.Logger = "127.0.0.1:0", 5*time.Second, reg, quiet
	dns, err := dnsserver.New(dcfg)
	if err != nil {
		return err
	}
	if err := dns.Start(ctx); err != nil {
		return err
	}
	defer dns.Shutdown(context.Background())
	api := heraldpb.NewHeraldClient(mustConn(lis.Addr().String()))

	// Backends share one port on different loopback addresses.
	port, err := freePort()
	if err != nil {
		return err
	}
	var backends []*echoBackend
	defer func() {
		for _, b := range backends {
			b.gs.Stop()
		}
	}()
	newBackend := func(name string) (*echoBackend, error) {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + len(backends))})
		b, err := startEchoBackend(name, netip.AddrPortFrom(ip, port))
		if err == nil {
			backends = append(backends, b)
		}
		return b, err
	}
	registerBackend := func(b *echoBackend) (start, done time.Time, err error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start = time.Now()
		_, err = api.Register(rctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
			Service: "echo", Id: b.name, Address: b.addr.Addr().String(), Port: uint32(b.addr.Port())}})
		return start, time.Now(), err
	}
	base, err := newBackend("base")
	if err != nil {
		return err
	}
	if _, _, err := registerBackend(base); err != nil {
		return err
	}

	// herald:///echo
	hcc, err := grpc.NewClient("herald://"+lis.Addr().String()+"/echo",
		grpc.WithResolvers(heraldresolver.NewBuilder(heraldresolver.WithLogger(quiet), heraldresolver.WithServiceConfig(""))),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer hcc.Close()
	hs := startCaller(hcc)
	defer hs.stop()
	if _, ok := hs.waitFor("base", firstRPCWait); !ok {
		return fmt.Errorf("herald client never reached the first backend")
	}
	var fromReturn, fromStart []time.Duration
	for i := 0; i < firstRPCRounds && ctx.Err() == nil; i++ {
		b, err := newBackend("h" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		start, done, err := registerBackend(b)
		if err != nil {
			return err
		}
		at, ok := hs.waitFor(b.name, firstRPCWait)
		if !ok {
			return fmt.Errorf("herald: backend %s got no RPC within %s", b.name, firstRPCWait)
		}
		fromReturn = append(fromReturn, at.Sub(done))
		fromStart = append(fromStart, at.Sub(start))
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = api.Deregister(dctx, &heraldpb.DeregisterRequest{Key: &heraldpb.InstanceKey{Service: "echo", Id: b.name}})
		cancel()
		if err != nil {
			return err
		}
	}
	hs.stop()

	// dns:///echo.service.herald:port against Herald's DNS server.
	dcc, err := grpc.NewClient(fmt.Sprintf("dns://%s/echo.service.herald:%d", dns.Addr(), port),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer dcc.Close()
	ds := startCaller(dcc)
	defer ds.stop()
	if _, ok := ds.waitFor("base", firstRPCWait); !ok {
		return fmt.Errorf("dns client never reached the first backend")
	}
	nb, err := newBackend("dns-new")
	if err != nil {
		return err
	}
	_, done, err := registerBackend(nb)
	if err != nil {
		return err
	}
	dnsResult := fmt.Sprintf("never within %s", dnsWindow)
	if at, ok := ds.waitFor(nb.name, dnsWindow); ok {
		dnsResult = at.Sub(done).Round(time.Millisecond).String()
	}
	calls := ds.calls()

	fmt.Println("time to first RPC on a new backend (round_robin; one caller sending back-to-back RPCs)")
	fmt.Printf("%-28s %-10s %-10s %-10s %-10s %s\n", "resolver", "p50", "p99", "max", "rounds", "measured from")
	fmt.Printf("%-28s %-10s %-10s %-10s %-10d %s\n", "herald (push)", pct(fromReturn, 50), pct(fromReturn, 99), pct(fromReturn, 100), len(fromReturn), "Register returned")
	fmt.Printf("%-28s %-10s %-10s %-10s %-10d %s\n", "herald (push)", pct(fromStart, 50), pct(fromStart, 99), pct(fromStart, 100), len(fromStart), "Register called")
	fmt.Printf("%-28s %-43s %s\n", "dns:/// (DNS TTL 5s)", dnsResult, fmt.Sprintf("Register returned; %d RPCs sent in the window", calls))
	fmt.Println("grpc-go's dns resolver re-resolves only when a connection fails or the balancer asks; a TTL expiry alone never adds a backend.")
	return nil
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(10 * time.Microsecond).String()
}

func mustConn(addr string) *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err) // only fails on invalid options
	}
	return cc
}

func freePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String()).Port(), nil
}

// echoBackend answers /herald.bench.Echo/Echo with its name.
type echoBackend struct {
	name string
	addr netip.AddrPort
	gs   *grpc.Server
}

func startEchoBackend(name string, addr netip.AddrPort) (*echoBackend, error) {
	lis, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	b := &echoBackend{name: name, addr: addr, gs: grpc.NewServer()}
	b.gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "herald.bench.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(wrapperspb.StringValue)); err != nil {
				return nil, err
			}
			return wrapperspb.String(name), nil
		}}},
	}, struct{}{})
	go b.gs.Serve(lis)
	return b, nil
}

// caller sends RPCs back to back and records when each backend first
// answered.
type caller struct {
	mu     sync.Mutex
	seen   map[string]time.Time
	n      int
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startCaller(cc *grpc.ClientConn) *caller {
	ctx, cancel := context.WithCancel(context.Background())
	c := &caller{seen: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for i := 0; i < 10_000_000 && ctx.Err() == nil; i++ {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			out := new(wrapperspb.StringValue)
			err := cc.Invoke(cctx, "/herald.bench.Echo/Echo", wrapperspb.String("x"), out)
			ccancel()
			c.mu.Lock()
			c.n++
			if _, ok := c.seen[out.GetValue()]; err == nil && !ok {
				c.seen[out.GetValue()] = time.Now()
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *caller) stop() { c.once.Do(func() { c.cancel(); <-c.done }) }

func (c *caller) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitFor polls until name has answered or d passes.
func (c *caller) waitFor(name string, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		t, ok := c.seen[name]
		c.mu.Unlock()
		if ok {
			return t, true
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Time{}, false
}
