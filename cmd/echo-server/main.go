// Command echo-server is Herald's demo backend: a tiny gRPC echo service
// (method /herald.demo.Echo/Echo, a google.protobuf.StringValue in and out,
// answering "<instance id>: <message>") that registers itself with a Herald
// agent through a session, with weight -weight, and on SIGTERM or Ctrl-C
// drains, waits the grace, deregisters and stops.
//
//	echo-server -id echo-1 -listen 127.0.0.1:0 -weight 3 -grace 2s
//
// It always runs behind the registration's guard (client.Guard): while the
// registry says the instance is draining, has weight 0 or is not
// registered, and from SIGTERM on, new RPCs are refused with Unavailable
// ("herald: draining" or "herald: not registered") and callers using the
// herald resolver retry them elsewhere. The guard also serves
// grpc.health.v1. When it stops it prints one JSON line on stdout:
//
//	{"id": "...", "served": N, "refused": N, "served_while_refusing": N}
//
// where served_while_refusing counts handler runs that began while the
// guard refused (RPCs that got past it an instant before a state change).
//
// It imports only the Go client (pushsvc/client), never the server side.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/pushsvc/client"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve echo on")
	advertise := flag.String("advertise", "", "IP to register (default: the listen IP)")
	service := flag.String("service", "echo", "service name to register")
	id := flag.String("id", "", "instance id (default echo-<port>)")
	agents := flag.String("herald", "", "Herald agent gRPC address(es), comma-separated (default $HERALD_ADDR or 127.0.0.1:8700)")
	grace := flag.Duration("grace", 2*time.Second, "how long to stay draining before deregistering")
	weight := flag.Uint("weight", 1, "the instance's weight: its share of new traffic (0: none)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *weight > math.MaxUint32 || flag.NArg() > 0 {
		log.Error("echo-server: want -weight in 0..4294967295 and no arguments")
		os.Exit(2)
	}
	if err := run(log, *listen, *advertise, *service, *id, *agents, *grace, uint32(*weight)); err != nil {
		log.Error("echo-server", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, advertise, service, id, agents string, grace time.Duration, weight uint32) error {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(lis.Addr().String())
	if err != nil {
		return err
	}
	ip := ap.Addr()
	if advertise != "" {
		if ip, err = netip.ParseAddr(advertise); err != nil {
			return fmt.Errorf("-advertise: %w", err)
		}
	}
	if id == "" {
		id = fmt.Sprintf("echo-%d", ap.Port())
	}

	c, err := client.New(client.ParseAddrs(agents), client.WithLogger(log), client.WithDrainGrace(grace))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	reg, err := c.Register(ctx, client.Instance{Service: service, ID: id, Address: ip, Port: ap.Port()}, client.WithWeight(weight))
	cancel()
	if err != nil {
		return err
	}
	guard, err := reg.Guard()
	if err != nil {
		reg.Close(context.Background())
		return err
	}
	st := &stats{id: id, guard: guard}
	gs := grpc.NewServer(guard.ServerOptions()...)
	healthpb.RegisterHealthServer(gs, guard.Health())
	gs.RegisterService(echoDesc(id, st), struct{}{})
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer st.print()
	log.Info("echo-server: serving and registered", "service", service, "id", id, "addr", netip.AddrPortFrom(ip, ap.Port()))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	lost := reg.Lost()
wait:
	for {
		select {
		case s := <-sig:
			log.Info("echo-server: draining", "signal", s.String(), "grace", grace)
			break wait
		case err := <-served:
			guard.Shutdown()
			reg.Close(context.Background())
			return err
		case <-lost:
			// It keeps serving: the newer registration may point here too.
			log.Warn("echo-server: registration replaced by a newer write through another agent; no longer keeping it", "err", reg.Err())
			lost = nil
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), grace+10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		log.Warn("echo-server: deregistration incomplete", "err", err)
	}
	guard.Shutdown()  // Close shut it down already; this says it here too
	gs.GracefulStop() // in-flight calls finish
	log.Info("echo-server: stopped")
	return nil
}

// stats counts what the server did.
type stats struct {
	id                  string
	guard               *client.Guard
	served, whileRefuse atomic.Uint64
}

func (s *stats) print() {
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"id": s.id, "served": s.served.Load(), "refused": s.guard.Refused(), "served_while_refusing": s.whileRefuse.Load(),
	})
}

// echoDesc is the hand-written service: Echo returns "<id>: <message>".
// The guard runs as the server's interceptor.
func echoDesc(id string, st *stats) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "herald.demo.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(_ context.Context, req any) (any, error) {
					if st.guard.State() != client.GuardServing {
						st.whileRefuse.Add(1)
					}
					st.served.Add(1)
					return wrapperspb.String(id + ": " + req.(*wrapperspb.StringValue).GetValue()), nil
				}
				if ic == nil {
					return h(ctx, in)
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/herald.demo.Echo/Echo"}, h)
			},
		}},
	}
}
