package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/resolver"
	"github.com/herald-sd/herald/testenv/wait"
)

// backend is a tiny gRPC server (the standard health service) that counts
// the RPCs it serves.
type backend struct {
	name  string
	addr  netip.AddrPort
	srv   *grpc.Server
	calls atomic.Int64
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: netip.MustParseAddrPort(ln.Addr().String())}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.calls.Add(1)
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(b.srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); b.srv.Serve(ln) }()
	t.Cleanup(func() { b.srv.Stop(); <-done })
	return b
}

// pushRecorder wraps the herald resolver's builder and records the last
// list of instances the resolver gave the balancer, and when. grpc-go's
// UpdateState returns once the balancer has built its picker from the
// list, so an RPC started after that time is picked from it.
type pushRecorder struct {
	grpcresolver.Builder
	mu  sync.Mutex
	ids []string
	at  time.Time
}

func (r *pushRecorder) Build(target grpcresolver.Target, cc grpcresolver.ClientConn, o grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	return r.Builder.Build(target, pushRecordingCC{cc, r}, o)
}

// last returns the ids of the last list and when the balancer had it.
func (r *pushRecorder) last() ([]string, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids, r.at
}

type pushRecordingCC struct {
	grpcresolver.ClientConn
	r *pushRecorder
}

func (c pushRecordingCC) UpdateState(s grpcresolver.State) error {
	err := c.ClientConn.UpdateState(s)
	var ids []string
	for _, a := range s.Addresses {
		id, _ := resolver.IDFromAddress(a)
		ids = append(ids, id)
	}
	c.r.mu.Lock()
	c.r.ids, c.r.at = ids, time.Now()
	c.r.mu.Unlock()
	return err
}

// Scenario 3: SIGTERM a node whose services clients use through the herald
// resolver. Its instances are drained, then removed, and the clients see
// zero failed RPCs.
func TestGracefulShutdown(t *testing.T) {
	const (
		victim  = 2
		grace   = 2 * time.Second
		svc     = "echo"
		callers = 4
	)
	c := Start(t, Options{Nodes: 3, Args: []string{"-drain-grace", grace.String()}})
	ctx := context.Background()
	view := watchNode(t, c, 0)

	// b0 (session) and b1 (plain) are owned by the victim; b2 and b3
	// (sessions) by node 1.
	var bs []*backend
	for k := range 4 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", k)))
	}
	inst := func(b *backend) client.Instance {
		return client.Instance{Service: svc, ID: b.name, Address: b.addr.Addr(), Port: b.addr.Port()}
	}
	onVictim := c.Client([]int{victim})
	onOther := c.Client([]int{1})
	for _, r := range []struct {
		cl *client.Client
		b  *backend
	}{{onVictim, bs[0]}, {onOther, bs[2]}, {onOther, bs[3]}} {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := r.cl.Register(rctx, inst(r.b)); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if err := registerPlain(ctx, c, victim, svc, "b1", bs[1].addr.Addr(), uint32(bs[1].addr.Port())); err != nil {
		t.Fatal(err)
	}

	// The callers resolve through nodes 0 and 1 with round_robin and no
	// retry (WithServiceConfig("") lets the dial option's config apply):
	// the push alone must keep RPCs off the leaving node.
	target := fmt.Sprintf("herald://%s,%s/%s", c.Node(0).GRPCAddr, c.Node(1).GRPCAddr, svc)
	pushes := &pushRecorder{Builder: resolver.NewBuilder(resolver.WithLogger(slog.New(slog.DiscardHandler)), resolver.WithServiceConfig(""))}
	cc, err := grpc.NewClient(target,
		grpc.WithResolvers(pushes),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	var (
		ok, failed atomic.Int64
		errMu      sync.Mutex
		errs       []string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		// lastStart is when each caller started its last finished call,
		// as time since epoch (monotonic).
		epoch     = time.Now()
		lastStart [callers]atomic.Int64
	)
	for k := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1_000_000 { // bounded; stop ends it long before
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := hc.Check(rctx, &healthpb.HealthCheckRequest{})
				cancel()
				lastStart[k].Store(int64(start.Sub(epoch)))
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	stopCallers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopCallers)
	wait.Eventually(t, 15*time.Second, "every backend serves RPCs", func() error {
		for _, b := range bs {
			if b.calls.Load() == 0 {
				return fmt.Errorf("%s has no RPCs yet", b.name)
			}
		}
		return nil
	})

	// SIGTERM the owner of b0 and b1, and follow them in node 0's stream.
	stopped := make(chan time.Duration, 1)
	sigterm := time.Now()
	go func() { stopped <- c.Stop(victim) }()
	statusOf := func(id string) (client.Status, bool) {
		in, ok := view.instance(svc, id)
		return in.Status, ok
	}
	drainedIn, err := wait.Until(10*time.Second, measureEvery, func() error {
		for _, id := range []string{"b0", "b1"} {
			if st, ok := statusOf(id); !ok || st != client.StatusDraining {
				return fmt.Errorf("%s: status %v (present %v), want draining", id, st, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the victim's instances were not drained before removal: %v", err)
	}
	drainedAt := time.Now()
	// The drain reaches the callers' balancer through their resolver; once
	// every caller has finished a call it started after that, no call picked
	// before the drain is still on its way. From then on the drained
	// backends must get no new RPCs while they are draining.
	var balancerHas []string
	balanced := wait.Eventually(t, 10*time.Second, "the callers' balancer to drop b0 and b1 and every caller to finish a call picked after that", func() error {
		ids, at := pushes.last()
		balancerHas = ids
		if at.IsZero() || slices.Contains(ids, "b0") || slices.Contains(ids, "b1") {
			return fmt.Errorf("the balancer has %v", ids)
		}
		for k := range callers {
			if lastStart[k].Load() <= int64(at.Sub(epoch)) {
				return fmt.Errorf("caller %d has not finished a call started after the push", k)
			}
		}
		return nil
	})
	before := bs[0].calls.Load() + bs[1].calls.Load()
	t.Logf("the callers' balancer has %v, and their calls in flight ended, %s after the drain was seen", balancerHas, balanced)
	if _, ok := statusOf("b0"); !ok {
		t.Fatal("b0 was removed before the window inside its drain began")
	}
	_, err = wait.Until(15*time.Second, measureEvery, func() error {
		for _, id := range []string{"b0", "b1"} {
			if _, ok := statusOf(id); ok {
				return fmt.Errorf("%s still present", id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the victim's instances were not removed: %v", err)
	}
	removedAt := time.Now()
	after := bs[0].calls.Load() + bs[1].calls.Load()
	stopTook := <-stopped
	// The drained backends go away, as their host would; the callers must
	// not notice.
	bs[0].srv.GracefulStop()
	bs[1].srv.GracefulStop()
	more := ok.Load() + 200
	wait.Eventually(t, 10*time.Second, "200 more RPCs after the drained backends stopped", func() error {
		if n := ok.Load(); n < more {
			return fmt.Errorf("%d of %d RPCs", n, more)
		}
		return nil
	})
	stopCallers()

	Figure(t, "graceful_drain_seen_after_sigterm_seconds", drainedIn.Seconds())
	Figure(t, "graceful_removed_after_sigterm_seconds", removedAt.Sub(sigterm).Seconds())
	Figure(t, "graceful_drain_to_removal_seconds", removedAt.Sub(drainedAt).Seconds())
	Figure(t, "graceful_sigterm_to_exit_seconds", stopTook.Seconds())
	Figure(t, "graceful_rpcs_ok", ok.Load())
	Figure(t, "graceful_rpcs_failed", failed.Load())
	Figure(t, "graceful_rpcs_to_drained_during_drain", after-before)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d RPCs failed, e.g. %s", n, strings.Join(errs, "; "))
	}
	if after != before {
		t.Errorf("the drained backends got %d new RPCs while draining", after-before)
	}
	if b2, b3 := bs[2].calls.Load(), bs[3].calls.Load(); b2 == 0 || b3 == 0 {
		t.Errorf("the remaining backends served %d and %d RPCs", b2, b3)
	}
}
