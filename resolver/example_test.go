package resolver_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/resolver"
)

// Dial a service through Herald: new instances get traffic the moment they
// register, in proportion to their weights, and draining ones stop getting
// new calls (the resolver's default service config: the herald_weighted
// balancer and a retry on UNAVAILABLE).
func Example() {
	// For the example, an in-process agent and one server of "api" that
	// registers itself with it.
	agent, err := heraldtest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()
	api1 := startServer(agent.Addr(), "api-1")
	defer api1.stop()

	// In production the target is "herald:///api": the agents come from
	// HERALD_ADDR, default 127.0.0.1:8700.
	cc, err := grpc.NewClient("herald://"+agent.Addr()+"/api",
		grpc.WithResolvers(resolver.NewBuilder()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, "from", answeredBy(p, api1))
	// Output: SERVING from api-1
}

// Several agents fail over in order; a tag filter keeps only v2 instances.
func ExampleNewBuilder() {
	// For the example, two agents of one cluster (in-process agents that
	// serve one registry) and two servers of "api": api-1 tagged v1, api-2
	// tagged v2.
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	var agents []*heraldtest.Agent
	for range 2 {
		a, err := heraldtest.Start(heraldtest.WithRegistry(reg))
		if err != nil {
			log.Fatal(err)
		}
		defer a.Close()
		agents = append(agents, a)
	}
	api1 := startServer(agents[0].Addr(), "api-1", "v1")
	defer api1.stop()
	api2 := startServer(agents[0].Addr(), "api-2", "v2")
	defer api2.stop()

	cc, err := grpc.NewClient("herald://"+agents[0].Addr()+","+agents[1].Addr()+"/api?tag=v2",
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithEmptyPushProtection(true))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		var p peer.Peer
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			log.Fatal(err)
		}
		fmt.Println(answeredBy(p, api1, api2))
	}
	// Output:
	// api-2
	// api-2
	// api-2
}

// server is a gRPC server with the standard health service that keeps
// itself registered with Herald as service "api", as a real server does
// with pushsvc/client.
type server struct {
	id   string
	addr netip.AddrPort
	srv  *grpc.Server
	c    *client.Client
}

func startServer(agent, id string, tags ...string) *server {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	s := &server{id: id, addr: netip.MustParseAddrPort(lis.Addr().String()), srv: grpc.NewServer()}
	healthpb.RegisterHealthServer(s.srv, health.NewServer())
	go s.srv.Serve(lis)
	if s.c, err = client.New([]string{agent}, client.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.c.Register(ctx, client.Instance{Service: "api", ID: id, Address: s.addr.Addr(), Port: s.addr.Port(), Tags: tags}); err != nil {
		log.Fatal(err)
	}
	return s
}

// stop ends the registration's session (the agent removes the instance)
// and the server.
func (s *server) stop() {
	s.c.Close()
	s.srv.Stop()
}

// answeredBy names the server at the peer's address.
func answeredBy(p peer.Peer, servers ...*server) string {
	for _, s := range servers {
		if p.Addr.String() == s.addr.String() {
			return s.id
		}
	}
	return p.Addr.String()
}

// Replace the default service config: here the retry is kept for reads
// but turned off for a method that must never run twice (a methodConfig
// without retryPolicy for it; the more specific name wins).
func ExampleWithServiceConfig() {
	const sc = `{
	  "loadBalancingConfig": [{"herald_weighted": {}}],
	  "methodConfig": [
	    {"name": [{}], "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s",
	      "maxBackoff": "0.1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
	    {"name": [{"service": "shop.Orders", "method": "Charge"}]}
	  ]
	}`
	cc, err := grpc.NewClient("herald:///shop",
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithServiceConfig(sc))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
