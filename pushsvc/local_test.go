package pushsvc

import (
	"context"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
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

// TestFrameMemo: frames built for different watchers from the same shared
// entries render once; other entries (even with equal bytes) or another
// header render again.
func TestFrameMemo(t *testing.T) {
	calls := 0
	memo := NewFrameMemo(func(r *heraldpb.WatchResponse) ([]byte, error) {
		calls++
		return []byte(r.GetKind().String()), nil
	})
	entry := encodeEventEntry(registry.Event{Rev: 7, Op: registry.OpUpsert, Instance: benchInstance()}, 7)
	same := func() *frame {
		return &frame{parts: frameParts(heraldpb.WatchResponse_KIND_DELTA, 7, "n@1", false, [][]byte{entry})}
	}
	for range 3 {
		out, err := memo.Render(same())
		if err != nil || string(out) != "KIND_DELTA" {
			t.Fatalf("Render = %q, %v", out, err)
		}
	}
	if calls != 1 {
		t.Fatalf("3 frames of the same entries rendered %d times, want 1", calls)
	}
	copyOf := append([]byte(nil), entry...)
	memo.Render(&frame{parts: frameParts(heraldpb.WatchResponse_KIND_DELTA, 7, "n@1", false, [][]byte{copyOf})})
	memo.Render(&frame{parts: frameParts(heraldpb.WatchResponse_KIND_DELTA, 8, "n@1", false, [][]byte{entry})})
	if calls != 3 {
		t.Fatalf("other entries and another header: %d renders, want 3", calls)
	}
	if out, err := memo.Render(&heraldpb.WatchResponse{Kind: heraldpb.WatchResponse_KIND_PROGRESS}); err != nil || string(out) != "KIND_PROGRESS" {
		t.Fatalf("a decoded message: %q, %v", out, err)
	}
}
