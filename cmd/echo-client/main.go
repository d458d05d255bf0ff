// Command echo-client is Herald's push demo caller: it dials a service
// through the herald resolver with round_robin and prints which backend
// answered each call.
//
//	HERALD_ADDR=127.0.0.1:8700 echo-client -target herald:///echo -n 20
//
// It imports only grpc-go and the resolver package.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-sd/herald/resolver"
)

func main() {
	target := flag.String("target", "herald:///echo", "gRPC target")
	n := flag.Int("n", 10, "number of calls (0: until interrupted)")
	interval := flag.Duration("interval", 500*time.Millisecond, "pause between calls")
	flag.Parse()

	cc, err := grpc.NewClient(*target,
		grpc.WithResolvers(resolver.NewBuilder()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-client:", err)
		os.Exit(1)
	}
	defer cc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	failed := 0
	for i := 1; (*n == 0 || i <= *n) && ctx.Err() == nil; i++ {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out := new(wrapperspb.StringValue)
		var p peer.Peer
		err := cc.Invoke(callCtx, "/herald.demo.Echo/Echo", wrapperspb.String(fmt.Sprintf("call %d", i)), out, grpc.Peer(&p))
		cancel()
		if err != nil {
			failed++
			fmt.Printf("call %d: error: %v\n", i, err)
		} else {
			fmt.Printf("call %d: %s (from %s)\n", i, out.GetValue(), p.Addr)
		}
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}
