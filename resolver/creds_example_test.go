package resolver_test

import (
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtls"
	"github.com/herald-sd/herald/resolver"
)

// Resolving through agents that serve mutual TLS: the resolver watches them
// with TLS credentials (here from HERALD_TLS_CA, HERALD_TLS_CERT and
// HERALD_TLS_KEY); the application's own connections to the backends keep
// their own credentials.
func ExampleWithTransportCredentials() {
	creds, err := client.TLSCredentials(heraldtls.Files{})
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("herald:///api",
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithTransportCredentials(creds))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
