package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

// TestSessionAgentRestart: the agent restarts (its sessions end, so the
// instance is removed) and the client registers it again.
func TestSessionAgentRestart(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	if in := a.Instance("echo", "e1"); in == nil || in.Check.Kind != registry.CheckSession {
		t.Fatalf("registered %+v, want a session instance", in)
	}
	a.Stop()
	if a.Instance("echo", "e1") != nil {
		t.Fatal("instance survived its session")
	}
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 10*time.Second, "re-registration on the restarted agent", func() bool {
		return a.Instance("echo", "e1") != nil && reg.Registrations() == 2
	})
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Instance("echo", "e1") != nil {
		t.Fatal("still registered after Close")
	}
}

// TestSessionFailover: with two agents the registration moves to the second
// when the first stops.
func TestSessionFailover(t *testing.T) {
	a, b := heraldtest.NewAgent(t), heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr(), b.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	defer reg.Close(ctx)
	if a.Instance("echo", "e1") == nil || b.Instance("echo", "e1") != nil {
		t.Fatal("want the registration on the first agent only")
	}
	a.Stop()
	wait.Eventually(t, 10*time.Second, "registration on the second agent", func() bool { return b.Instance("echo", "e1") != nil })
}

func (in Instance) toRegistry() *registry.Instance {
	return &registry.Instance{Service: in.Service, ID: in.ID, Address: in.Address, Port: in.Port, Weight: 1}
}

// TestRegistrationLostToANewerWrite: another node registers the same key
// later; the registration learns it lost the key and stops re-registering
// it, and Close has nothing left to do.
func TestRegistrationLostToANewerWrite(t *testing.T) {
	a := heraldtest.NewAgent(t)
	c := newTestClient(t, []string{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := mustRegister(t, ctx, c, "e1")
	newer := a.Instance("echo", "e1").Clone()
	newer.Owner, newer.Stamp, newer.Check = "n2", newer.Stamp+1, registry.Check{}
	a.Registry().Apply([]registry.Delta{{Owner: "n2", Version: registry.Version{Epoch: 1, Seq: 1}, Op: registry.OpUpsert, Instance: newer, Time: time.Now(), Stamp: newer.Stamp}})
	select {
	case <-reg.Lost():
	case <-ctx.Done():
		t.Fatal("the registration was not told it lost its key")
	}
	if err := reg.Err(); err == nil || !strings.Contains(err.Error(), "e1") {
		t.Fatalf("Err() = %v", err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if in := a.Instance("echo", "e1"); in == nil || in.Owner != "n2" || reg.Registrations() != 1 {
		t.Fatalf("after Close: %+v, registrations %d", in, reg.Registrations())
	}
}

// TestRegistrationLostToANewerWriteThroughTheSameAgent: a rolling restart
// with a stable id. The new process registers the key through the same
// agent while the old one still runs; then the old one closes. The old
// registration must learn that it lost the key, as it does when the newer
// write comes through another agent, or its Close drains and deregisters
// the new process's instance.
func TestRegistrationLostToANewerWriteThroughTheSameAgent(t *testing.T) {
	a := heraldtest.NewAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oldProc := newTestClient(t, []string{a.Addr()})
	old, err := oldProc.Register(ctx, testInstance("e1"))
	if err != nil {
		t.Fatal(err)
	}
	newProc := newTestClient(t, []string{a.Addr()})
	in := testInstance("e1")
	in.Port = 7001
	if _, err := newProc.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Lost():
	case <-time.After(2 * time.Second):
		t.Error("the old registration was not told it lost its key")
	}
	old.Close(ctx)
	if got := a.Instance("echo", "e1"); got == nil || got.Port != 7001 || got.Status != registry.StatusPassing {
		t.Fatalf("after the old process closed, the new process's instance is %+v", got)
	}
}
