// Command echo-server is Herald's push demo backend: a tiny gRPC echo
// service (method /herald.demo.Echo/Echo, a google.protobuf.StringValue in
// and out) that registers itself with a Herald agent through a session and,
// on SIGTERM or Ctrl-C, drains, waits the grace, deregisters and stops.
//
//	echo-server -id echo-1 -listen 127.0.0.1:0 -grace 2s
//
// It imports only the Go client (pushsvc/client), never the server side.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
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
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *listen, *advertise, *service, *id, *agents, *grace); err != nil {
		log.Error("echo-server", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, advertise, service, id, agents string, grace time.Duration) error {
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

	gs := grpc.NewServer()
	gs.RegisterService(echoDesc(id), struct{}{})
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	c, err := client.New(client.ParseAddrs(agents), client.WithLogger(log), client.WithDrainGrace(grace))
	if err != nil {
		gs.Stop()
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	reg, err := c.Register(ctx, client.Instance{Service: service, ID: id, Address: ip, Port: ap.Port()})
	cancel()
	if err != nil {
		gs.Stop()
		return err
	}
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
	gs.GracefulStop() // in-flight calls finish
	log.Info("echo-server: stopped")
	return nil
}

// echoDesc is the hand-written service: Echo returns "<id>: <message>".
func echoDesc(id string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "herald.demo.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				return wrapperspb.String(id + ": " + in.GetValue()), nil
			},
		}},
	}
}
