package resolver_test

import (
	"context"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/herald-sd/herald/resolver"
)

// Dial a service through Herald with round_robin: new instances get traffic
// the moment they register, draining ones stop getting new calls.
func Example() {
	cc, err := grpc.NewClient("herald:///api", // agents from HERALD_ADDR, default 127.0.0.1:8700
		grpc.WithResolvers(resolver.NewBuilder()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		log.Print(err)
		return
	}
	log.Printf("answered by %s", p.Addr)
}

// Several agents fail over in order; a tag filter keeps only v2 instances.
func ExampleNewBuilder() {
	cc, err := grpc.NewClient("herald://10.0.0.1:8700,10.0.0.2:8700/api?tag=v2",
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithEmptyPushProtection(true))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
