package store

import (
	"context"
	"net/netip"
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

func TestRoundTripThroughRegistry(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := &registry.Instance{Service: "api", ID: "a1", Address: netip.MustParseAddr("fd00::5"), Port: 9000,
		Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}, Weight: 7}
	if _, err := r.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	gone := &registry.Instance{Service: "api", ID: "a2", Address: netip.MustParseAddr("10.0.0.1"), Port: 1, Weight: 1}
	r.Register(ctx, gone)
	if _, err := r.Deregister(ctx, gone.Key()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	st.Close()

	// A second Open while the first is held fails clearly.
	st, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("second Open of a held data dir succeeded")
	}
	r2, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	svc := r2.Snapshot().Service("api")
	if svc == nil || svc.Len() != 1 {
		t.Fatalf("reloaded %+v", svc)
	}
	got := svc.List()[0]
	if got.ID != "a1" || got.Address != in.Address || got.Port != 9000 || got.Weight != 7 || got.Meta["zone"] != "a" || !got.HasTag("v1") || got.Owner != "n1" {
		t.Fatalf("reloaded %+v", got)
	}
}

func TestEpochRisesWhenTheClockGoesBack(t *testing.T) {
	st, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r1, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: 1000})
	if err != nil {
		t.Fatal(err)
	}
	r1.Close()
	// The next run's clock is behind the last run's.
	r2, err := registry.New(registry.Config{Node: "n1", Store: st, Epoch: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if e := r2.Epoch(); e != 1001 {
		t.Fatalf("epoch after a clock step back = %d, want 1001", e)
	}
	if v := r2.LocalVersion(); v.Epoch != 1001 {
		t.Fatalf("local version %v", v)
	}
}
