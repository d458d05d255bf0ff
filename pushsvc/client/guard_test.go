package client

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

// guarded is a real gRPC server behind a guard, and a direct connection to
// it. Its Echo method blocks while hold is non-nil and open.
type guarded struct {
	cc      *grpc.ClientConn
	hold    chan struct{}
	entered chan struct{} // gets a value when a "hold" call is in the handler
}

func startGuarded(t *testing.T, g *Guard) *guarded {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &guarded{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	gs := grpc.NewServer(g.ServerOptions()...)
	healthpb.RegisterHealthServer(gs, g.Health())
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "herald.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				if in.GetValue() == "hold" {
					s.entered <- struct{}{}
					<-s.hold
				}
				return wrapperspb.String("ok"), nil
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/herald.test.Echo/Echo"}, h)
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			return ss.SendMsg(wrapperspb.String("ok"))
		}}},
	}, struct{}{})
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	s.cc, err = grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cc.Close(); gs.Stop(); <-done })
	return s
}

// call makes one unary call; it returns the error and the refusal trailer.
func (s *guarded) call(msg string) (error, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var tr metadata.MD
	err := s.cc.Invoke(ctx, "/herald.test.Echo/Echo", wrapperspb.String(msg), new(wrapperspb.StringValue), grpc.Trailer(&tr))
	v := tr.Get(RefusedTrailer)
	if len(v) == 0 {
		return err, ""
	}
	return err, v[0]
}

func (s *guarded) stream() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/herald.test.Echo/Stream")
	if err != nil {
		return err
	}
	if err := st.SendMsg(wrapperspb.String("x")); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	return st.RecvMsg(new(wrapperspb.StringValue))
}

func (s *guarded) health() healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(s.cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "echo"})
	if err != nil {
		return -1
	}
	return r.GetStatus()
}

// waitRefusal waits until calls are refused with want (a trailer value, or
// "" for success) and the health service says the matching status.
func (s *guarded) waitRefusal(t *testing.T, want string) {
	t.Helper()
	wait.Eventually(t, 5*time.Second, "guard "+want, func() bool {
		err, tr := s.call("x")
		if tr != want {
			return false
		}
		if want == "" {
			return err == nil && s.stream() == nil && s.health() == healthpb.HealthCheckResponse_SERVING
		}
		st := status.Convert(err)
		serr := status.Convert(s.stream())
		return st.Code() == codes.Unavailable && st.Message() == "herald: "+want &&
			serr.Code() == codes.Unavailable && serr.Message() == "herald: "+want &&
			s.health() == healthpb.HealthCheckResponse_NOT_SERVING
	})
}

// TestGuardRegistration: a registration's guard serves, refuses while the
// instance is drained (through the agent, as `herald drain` does), serves
// again when undrained, and refuses from the start of the registration's
// Close on.
func TestGuardRegistration(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	g, err := reg.Guard()
	if err != nil {
		t.Fatal(err)
	}
	if g2, _ := reg.Guard(); g2 != g {
		t.Fatal("a second Guard() returned another guard")
	}
	s := startGuarded(t, g)
	s.waitRefusal(t, "")

	if n, err := c.SetStatus(ctx, "", "", StatusDraining); err != nil || n != 1 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	s.waitRefusal(t, "draining")

	if _, err := c.SetStatus(ctx, "", "", StatusPassing); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "")
	before := g.Refused()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if g.State() != GuardShuttingDown {
		t.Fatalf("after Close the guard is %v, want shutting down", g.State())
	}
	s.waitRefusal(t, "draining")
	if g.Refused() <= before {
		t.Fatal("refusals not counted")
	}
}

// TestGuardInFlight: an RPC that passed the guard before the drain
// finishes after it.
func TestGuardInFlight(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	g, err := reg.Guard()
	if err != nil {
		t.Fatal(err)
	}
	s := startGuarded(t, g)
	s.waitRefusal(t, "")
	inflight := make(chan error, 1)
	go func() { err, _ := s.call("hold"); inflight <- err }()
	<-s.entered
	if _, err := c.SetStatus(ctx, "", "", StatusDraining); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "draining")
	close(s.hold)
	if err := <-inflight; err != nil {
		t.Fatalf("the RPC in flight during the drain: %v", err)
	}
}

// TestGuardFollowsRegistry: a guard built from a client and a key follows
// the instance's weight and presence.
func TestGuardFollowsRegistry(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	g, err := NewGuard(c, "echo", "w1")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	s := startGuarded(t, g)
	s.waitRefusal(t, "not registered")

	in := &registry.Instance{Service: "echo", ID: "w1", Address: netip.MustParseAddr("127.0.0.1"), Port: 7001, Weight: 2}
	ctx := context.Background()
	if _, err := a.Registry().Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "")
	zero := in.Clone()
	zero.Weight = 0
	if _, err := a.Registry().Register(ctx, zero); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "draining")
	if _, err := a.Registry().Register(ctx, in.Clone()); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "")
	if _, err := a.Registry().Deregister(ctx, registry.Key{Service: "echo", ID: "w1"}); err != nil {
		t.Fatal(err)
	}
	s.waitRefusal(t, "not registered")
	g.Shutdown()
	g.Shutdown()
	s.waitRefusal(t, "draining")
	if _, err := NewGuard(c, "", "x"); err == nil {
		t.Fatal("NewGuard without a service: no error")
	}
}

// TestGuardAllocs: the serving path allocates nothing.
func TestGuardAllocs(t *testing.T) {
	g := &Guard{}
	ic := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _, _ = ic(ctx, nil, info, h) }); n != 0 {
		t.Fatalf("serving: %v allocs per RPC, want 0", n)
	}
}

// BenchmarkGuardUnary is the guard's cost per RPC on the serving path:
// the interceptor around a handler that does nothing, against the handler
// alone.
func BenchmarkGuardUnary(b *testing.B) {
	g := &Guard{}
	ic := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = h(ctx, nil)
		}
	})
	b.Run("guarded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ic(ctx, nil, info, h)
		}
	})
	b.Run("refused", func(b *testing.B) {
		g.state.Store(uint32(GuardDraining))
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ic(ctx, nil, info, h)
		}
	})
}
