package resolver_test

import (
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-sd/herald/resolver"
)

// Resolve through agents that run with -acl-file: the token needs read on
// the service. Without WithToken the resolver sends $HERALD_TOKEN, if set.
func ExampleWithToken() {
	cc, err := grpc.NewClient("herald://127.0.0.1:8700/api",
		grpc.WithResolvers(resolver.NewBuilder(resolver.WithToken("s3cret-api"))),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
