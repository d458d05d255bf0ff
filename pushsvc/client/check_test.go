package client

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
)

// TestRegisterChecked: the check reaches the agent as given, with the
// agent's defaults for what was left zero; WithWeight(0) registers weight
// 0; a kind that is not active is refused before any call.
func TestRegisterChecked(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := Instance{Service: "echo", ID: "e1", Address: netip.MustParseAddr("10.0.0.1"), Port: 80}
	got, err := c.RegisterChecked(ctx, in, ActiveCheck{Kind: CheckHTTP, Target: "http://10.0.0.1/health", Interval: 5 * time.Second,
		FailuresBeforeCritical: 3}, WithWeight(0))
	if err != nil {
		t.Fatal(err)
	}
	if got.Weight != 0 || got.Node == "" {
		t.Fatalf("stored %+v, want weight 0", got)
	}
	stored := a.Instance("echo", "e1")
	want := registry.Check{Kind: registry.CheckHTTP, Target: "http://10.0.0.1/health", Interval: 5 * time.Second, Timeout: 5 * time.Second,
		SuccessBeforePassing: 1, FailuresBeforeCritical: 3}
	if stored == nil || stored.Check != want {
		t.Fatalf("stored check %+v, want %+v", stored, want)
	}
	if _, err := c.RegisterChecked(ctx, in, ActiveCheck{Kind: CheckTCP, Target: "nohost"}); err == nil {
		t.Fatal("a bad target was accepted")
	}
	if _, err := c.RegisterChecked(ctx, in, ActiveCheck{Target: "h:1"}); err == nil {
		t.Fatal("a check without a kind was accepted")
	}
}
