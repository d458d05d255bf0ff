package client

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GuardState is what a Guard knows about its own instance.
type GuardState uint32

// Guard states. Only GuardServing accepts new RPCs.
const (
	// GuardServing: registered, passing or warning (or critical: a failing
	// check is for the registry to act on), weight above 0.
	GuardServing GuardState = iota
	// GuardDraining: status draining or weight 0.
	GuardDraining
	// GuardNotRegistered: the registry does not hold the instance (never
	// registered, deregistered, reaped, or taken over by a registration of
	// the same key at another address).
	GuardNotRegistered
	// GuardShuttingDown: Shutdown was called (or the Registration is
	// closing); it never changes again.
	GuardShuttingDown
)

// String returns "serving", "draining", "not registered" or "shutting down".
func (s GuardState) String() string {
	switch s {
	case GuardServing:
		return "serving"
	case GuardDraining:
		return "draining"
	case GuardNotRegistered:
		return "not registered"
	case GuardShuttingDown:
		return "shutting down"
	}
	return "unknown"
}

// RefusedTrailer is the trailer key on an RPC a Guard refused; its value
// is "draining" or "not registered". The herald resolver's balancer reads
// it to take the backend out of its rotation.
const RefusedTrailer = "herald-refused"

// The refusals, built once: refusing allocates nothing either.
var (
	errRefusedDraining      = status.Error(codes.Unavailable, "herald: draining")
	errRefusedNotRegistered = status.Error(codes.Unavailable, "herald: not registered")
	trailerDraining         = metadata.Pairs(RefusedTrailer, "draining")
	trailerNotRegistered    = metadata.Pairs(RefusedTrailer, "not registered")
)

// Guard makes a backend refuse new RPCs while the registry says it should
// get none: its instance is draining, has weight 0 or is not registered, or
// the backend is shutting down (Shutdown). A refused RPC ends with
// codes.Unavailable, the message "herald: draining" or "herald: not
// registered", and the trailer RefusedTrailer; the backend did not run it,
// so the caller may retry it anywhere (the herald resolver's default
// service config does). RPCs already running finish.
//
// The Guard learns its instance's state from a Watch stream (pushed, not
// polled); while the stream is down it keeps the last state. The request
// path reads the state with one atomic load and allocates nothing.
//
// It also drives a grpc.health.v1 service (Health): SERVING while the
// guard serves, NOT_SERVING otherwise, for the empty service name and for
// the instance's service name. Health checks themselves are never refused.
type Guard struct {
	state   atomic.Uint32 // GuardState
	refused atomic.Uint64

	service, id string
	addr        netip.AddrPort // expected address; zero: any
	health      *health.Server

	mu      sync.Mutex // orders state changes with health updates
	w       *Watcher
	cancel  context.CancelFunc
	done    chan struct{}
	changes chan GuardState // optional observer (tests, logs)
}

// GuardOption configures a Guard.
type GuardOption func(*Guard)

// WithGuardHealth makes the guard drive hs instead of a health server of
// its own.
func WithGuardHealth(hs *health.Server) GuardOption { return func(g *Guard) { g.health = hs } }

// WithGuardAddress makes the guard treat a registration of its key at
// another address as "not registered".
func WithGuardAddress(ap netip.AddrPort) GuardOption { return func(g *Guard) { g.addr = ap } }

// NewGuard returns a guard for the instance service/id, learning its state
// through c. It refuses RPCs ("not registered") until the first state
// arrives from an agent. Close stops it; so does c.Close.
func NewGuard(c *Client, service, id string, opts ...GuardOption) (*Guard, error) {
	return newGuard(c, service, id, GuardNotRegistered, opts...)
}

func newGuard(c *Client, service, id string, initial GuardState, opts ...GuardOption) (*Guard, error) {
	if service == "" || id == "" {
		return nil, fmt.Errorf("client: guard: service and id are required")
	}
	g := &Guard{service: strings.ToLower(service), id: id, done: make(chan struct{})}
	for _, o := range opts {
		o(g)
	}
	if g.health == nil {
		g.health = health.NewServer()
	}
	g.state.Store(uint32(initial))
	g.setHealth(initial)
	ctx, cancel := context.WithCancel(c.ctx)
	w, err := c.Watch(ctx, []string{g.service})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: guard: %w", err)
	}
	g.w, g.cancel = w, cancel
	go g.run()
	return g, nil
}

// Guard returns a guard for this registration's instance (one per
// Registration; later calls return the same one). It serves from the
// start, since the agent accepted the registration, and follows the
// registry from then on; Close on the registration switches it to
// GuardShuttingDown before draining, so it refuses at once.
func (r *Registration) Guard() (*Guard, error) {
	r.guardMu.Lock()
	defer r.guardMu.Unlock()
	if r.guard != nil {
		return r.guard, nil
	}
	r.mu.Lock()
	want := r.want
	r.mu.Unlock()
	var opts []GuardOption
	if want.Address.IsValid() {
		opts = append(opts, WithGuardAddress(want.AddrPort()))
	}
	g, err := newGuard(r.c, want.Service, want.ID, GuardServing, opts...)
	if err != nil {
		return nil, err
	}
	r.guard = g
	return g, nil
}

// State returns the guard's current state.
func (g *Guard) State() GuardState { return GuardState(g.state.Load()) }

// Refused counts the RPCs the guard refused.
func (g *Guard) Refused() uint64 { return g.refused.Load() }

// Health returns the grpc.health.v1 server the guard drives; register it
// with healthpb.RegisterHealthServer(s, g.Health()).
func (g *Guard) Health() *health.Server { return g.health }

// Shutdown makes the guard refuse every new RPC from now on and sets the
// health service to NOT_SERVING for good. Call it before
// grpc.Server.GracefulStop. It is idempotent.
func (g *Guard) Shutdown() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.State() == GuardShuttingDown {
		return
	}
	g.state.Store(uint32(GuardShuttingDown))
	g.health.Shutdown()
	g.notify(GuardShuttingDown)
}

// Close stops following the registry (the state stays as it is). It is
// idempotent and waits for the guard's goroutine.
func (g *Guard) Close() {
	g.cancel()
	<-g.done
}

// ServerOptions returns the unary and stream interceptors as server
// options, for grpc.NewServer(g.ServerOptions()...). With other
// interceptors, chain the guard's first (grpc.ChainUnaryInterceptor).
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	}
}

// UnaryServerInterceptor refuses new unary RPCs while the guard does not
// serve.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if g.state.Load() != uint32(GuardServing) {
			if err := g.refuse(ctx, info.FullMethod); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor refuses new streams while the guard does not
// serve; streams already open go on.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if g.state.Load() != uint32(GuardServing) {
			if err := g.refuse(ss.Context(), info.FullMethod); err != nil {
				return err
			}
		}
		return handler(srv, ss)
	}
}

// refuse returns the refusal for the current state, or nil for methods
// that are never refused (health checks) and when the state went back to
// serving.
func (g *Guard) refuse(ctx context.Context, method string) error {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	var err error
	switch GuardState(g.state.Load()) {
	case GuardServing:
		return nil
	case GuardNotRegistered:
		err = errRefusedNotRegistered
		_ = grpc.SetTrailer(ctx, trailerNotRegistered)
	default:
		err = errRefusedDraining
		_ = grpc.SetTrailer(ctx, trailerDraining)
	}
	g.refused.Add(1)
	return err
}

// run follows the instance through the watcher.
func (g *Guard) run() {
	defer close(g.done)
	for u := range g.w.Updates() {
		g.set(g.stateOf(u.Services[g.service]))
	}
}

// stateOf finds the instance in a service's list.
func (g *Guard) stateOf(insts []Instance) GuardState {
	for i := range insts {
		in := &insts[i]
		if in.ID != g.id {
			continue
		}
		if g.addr.IsValid() && in.AddrPort() != g.addr {
			return GuardNotRegistered
		}
		if in.Status == StatusDraining || in.Weight == 0 {
			return GuardDraining
		}
		return GuardServing
	}
	return GuardNotRegistered
}

// set moves to s unless shutting down.
func (g *Guard) set(s GuardState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.State()
	if old == GuardShuttingDown || old == s {
		return
	}
	g.state.Store(uint32(s))
	g.setHealth(s)
	g.notify(s)
}

func (g *Guard) setHealth(s GuardState) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s == GuardServing {
		st = healthpb.HealthCheckResponse_SERVING
	}
	g.health.SetServingStatus("", st)
	g.health.SetServingStatus(g.service, st)
}

// notify tells the observer, if any, without blocking.
func (g *Guard) notify(s GuardState) {
	if g.changes != nil {
		select {
		case g.changes <- s:
		default:
		}
	}
}
