package pushsvc

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// BenchmarkACLUnary is one ListInstances round trip over loopback gRPC
// without an ACL, and with testACL and a token (its metadata, the
// interceptor, and the rule check).
func BenchmarkACLUnary(b *testing.B) {
	p, err := acl.Parse([]byte(testACL))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy *acl.Policy
		opts   []grpc.DialOption
	}{
		{"no-acl", nil, nil},
		{"acl-token", p, []grpc.DialOption{grpc.WithPerRPCCredentials(client.TokenCredentials("s3cret-api"))}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, envOpts{server: func(c *Config) { c.ACL = tc.policy }})
			cl := heraldpb.NewHeraldClient(e.dial(b, tc.opts...))
			ctx := context.Background()
			if _, err := cl.Register(ctx, &heraldpb.RegisterRequest{Instance: inst("api", "a1")}); err != nil {
				b.Fatal(err)
			}
			req := &heraldpb.ListInstancesRequest{Service: "api"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cl.ListInstances(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
