package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/traffic"
)

// trafficEnv starts nodes agents and builds echo-server.
func trafficEnv(t *testing.T, nodes int) traffic.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts agents and echo-server processes")
	}
	c := Start(t, Options{Nodes: nodes})
	env := traffic.Env{EchoServer: buildPackage(t, "./cmd/echo-server"), Dir: t.TempDir()}
	for _, n := range c.Nodes() {
		env.Agents = append(env.Agents, n.GRPCAddr)
	}
	return env
}

// TestTrafficWeights: three echo-server processes with weights 1, 2 and 5
// behind a real agent get 8,000 RPCs of a herald-resolved client each
// within ±3% of their weight's share; after the weights become 5, 2 and 1
// so do the next 8,000, measured from 1 s after the change.
func TestTrafficWeights(t *testing.T) {
	env := trafficEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := traffic.Weights(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weights 1:2:5: %s; weights 5:2:1: %s", traffic.Split(res.Before), traffic.Split(res.After))
	Figure(t, "traffic_weights_max_deviation_pct", 100*res.MaxDeviation)
	if res.MaxDeviation > 0.03 {
		t.Fatalf("a share is %.1f points off its weight's share, want at most 3", 100*res.MaxDeviation)
	}
}

// TestTrafficStaleClient: ten clients at about 2,000 RPC/s over three
// backends behind two agents; one client's watch is held back for 3 s
// while backend b1 is drained, deregistered and stopped. No RPC fails in
// any client: the RPCs the stale client still sends to b1 are refused by
// its guard and retried elsewhere; b1 runs none that arrived after it
// learned of its drain.
func TestTrafficStaleClient(t *testing.T) {
	env := trafficEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := traffic.StaleClient(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients, %d RPCs in %s (%.0f/s), %d failed (%v, first %q); stale client: %d RPCs %v; b1: %+v",
		res.Clients, res.Total.Calls, res.Duration.Round(time.Millisecond), res.Rate(), res.Total.Failed, res.Total.Errors, res.Total.FirstError,
		res.Stale.Calls, res.Stale.ByID, res.Drained)
	Figure(t, "traffic_stale_rpcs", res.Total.Calls)
	Figure(t, "traffic_stale_failed", res.Total.Failed)
	Figure(t, "traffic_stale_refused_and_retried", res.Drained.Refused)
	if res.Total.Failed != 0 {
		t.Errorf("%d RPCs failed, first: %s", res.Total.Failed, res.Total.FirstError)
	}
	if res.Drained.ServedWhileRefusing != 0 {
		t.Errorf("b1 ran %d RPCs that arrived after its drain reached it", res.Drained.ServedWhileRefusing)
	}
	if res.Drained.Refused == 0 {
		t.Errorf("b1 refused nothing: the stale client never sent it an RPC after the drain (was its list stale?)")
	}
	// About 2,000 RPC/s is the aim; a loaded machine may pace slower,
	// which does not weaken the outcome checked above.
	Figure(t, "traffic_stale_rpc_per_second", int(res.Rate()))
	if res.Rate() < 500 {
		t.Errorf("only %.0f RPC/s, want about 2,000", res.Rate())
	}
}

// TestTrafficRollingRestart: five backends under load are each stopped
// (SIGTERM: refuse, drain, deregister) and started again in turn; no RPC
// fails.
func TestTrafficRollingRestart(t *testing.T) {
	env := trafficEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := traffic.RollingRestart(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d backends restarted in %s: %d RPCs, %d failed (%v, first %q), %d refused and retried",
		res.Backends, res.Duration.Round(time.Millisecond), res.Total.Calls, res.Total.Failed, res.Total.Errors, res.Total.FirstError, res.Refused)
	Figure(t, "traffic_rolling_rpcs", res.Total.Calls)
	Figure(t, "traffic_rolling_failed", res.Total.Failed)
	if res.Total.Failed != 0 {
		t.Fatalf("%d RPCs failed, first: %s", res.Total.Failed, res.Total.FirstError)
	}
}
