package pushsvc

import (
	"context"
	"testing"

	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// TestFieldDetail: an InvalidArgument names its field in a
// google.rpc.BadRequest detail, over the wire and in process (Local), so
// that every door and every client can point at the field.
func TestFieldDetail(t *testing.T) {
	e := newEnv(t, envOpts{})
	req := &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{Service: "api", Id: "a1", Address: "10.0.0.1", Port: 70000}}
	_, remote := e.client.Register(context.Background(), req)
	_, local := e.srv.Local().Register(context.Background(), req)
	for name, err := range map[string]error{"grpc": remote, "local": local} {
		if codeOf(err).String() != "InvalidArgument" || FieldOf(err) != "port" {
			t.Errorf("%s: %v: field %q, want InvalidArgument naming port", name, err, FieldOf(err))
		}
	}
	if _, err := e.srv.Local().ListInstances(context.Background(), &heraldpb.ListInstancesRequest{Service: "api"}); err != nil || FieldOf(err) != "" {
		t.Errorf("a good request: %v, field %q", err, FieldOf(err))
	}
}
