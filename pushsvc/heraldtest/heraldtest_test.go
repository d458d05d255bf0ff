package heraldtest_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(addrs, client.WithLogger(slog.New(slog.DiscardHandler)), client.WithDrainGrace(0),
		client.WithBackoff(client.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func plain(id string) *registry.Instance {
	return &registry.Instance{Service: "api", ID: id, Address: netip.MustParseAddr("10.0.0.1"), Port: 9000}
}

// TestStopAndRestart: Stop and Kill end the agent's sessions (their
// instances go) and keep the rest of the registry; Restart serves it again
// on the same address, where the client registers its session again.
func TestStopAndRestart(t *testing.T) {
	tests := []struct {
		name    string
		stop    func(*heraldtest.Agent)
		stopped bool // the session's instance is gone before Restart
	}{
		{"stop", (*heraldtest.Agent).Stop, true},
		{"kill", (*heraldtest.Agent).Kill, true},
		{"restart while running", func(*heraldtest.Agent) {}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := heraldtest.NewAgent(t)
			if _, err := a.Registry().Register(ctxT(t), plain("p1")); err != nil {
				t.Fatal(err)
			}
			reg, err := newClient(t, a.Addr()).Register(ctxT(t), client.Instance{Service: "api", ID: "s1", Address: netip.MustParseAddr("10.0.0.2"), Port: 9000})
			if err != nil {
				t.Fatal(err)
			}
			if in := a.Instance("api", "s1"); in == nil || in.Check.Kind != registry.CheckSession || in.Owner != heraldtest.Node {
				t.Fatalf("session instance %+v, want one owned by %s", in, heraldtest.Node)
			}
			addr := a.Addr()
			tc.stop(a)
			tc.stop(a) // idempotent
			if tc.stopped && a.Instance("api", "s1") != nil {
				t.Fatal("the session's instance outlived the agent's stop")
			}
			if err := a.Restart(); err != nil {
				t.Fatal(err)
			}
			if a.Addr() != addr || a.Instance("api", "p1") == nil {
				t.Fatalf("restarted on %s with p1 %v, want %s and p1 kept", a.Addr(), a.Instance("api", "p1"), addr)
			}
			wait.Eventually(t, 10*time.Second, "the session registered again", func() bool {
				return a.Instance("api", "s1") != nil && reg.Registrations() == 2
			})
		})
	}
}

// TestSharedRegistry: agents on one registry see each other's writes, and
// closing them leaves the caller's registry open.
func TestSharedRegistry(t *testing.T) {
	shared, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() }) // after the agents' cleanups
	a1 := heraldtest.NewAgent(t, heraldtest.WithRegistry(shared))
	a2 := heraldtest.NewAgent(t, heraldtest.WithRegistry(shared), heraldtest.WithConfig(pushsvc.Config{WatchHistory: 16}))
	if a1.Addr() == a2.Addr() {
		t.Fatalf("both agents on %s", a1.Addr())
	}
	if _, err := newClient(t, a1.Addr()).Register(ctxT(t), client.Instance{Service: "api", ID: "s1", Address: netip.MustParseAddr("10.0.0.2"), Port: 9000}); err != nil {
		t.Fatal(err)
	}
	w, err := newClient(t, a2.Addr()).Watch(ctxT(t), []string{"api"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case u := <-w.Updates():
		if l := u.Services["api"]; len(l) != 1 || l[0].ID != "s1" || l[0].Node != "n1" {
			t.Fatalf("watch through the second agent: %+v", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no update through the second agent")
	}
	a1.Close()
	a2.Close()
	a1.Close() // idempotent
	if err := a1.Restart(); err == nil {
		t.Fatal("Restart after Close succeeded")
	}
	if _, err := shared.Register(ctxT(t), plain("p1")); err != nil {
		t.Fatalf("the caller's registry after the agents closed: %v", err)
	}
}
