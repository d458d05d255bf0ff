package client

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
)

// realAgent is an in-process pushsvc server with its own registry.
type realAgent struct {
	reg  *registry.Registry
	addr string
	ps   *pushsvc.Server
	gs   *grpc.Server
	done chan struct{}
	once sync.Once
}

func startReal(t *testing.T, reg *registry.Registry, addr string) *realAgent {
	t.Helper()
	if reg == nil {
		var err error
		if reg, err = registry.New(registry.Config{Node: "n1"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close() })
	}
	return startRealWith(t, reg, pushsvc.Config{Registry: reg, Logger: quietLog(), ProgressInterval: 200 * time.Millisecond}, addr)
}

// startRealWith serves cfg.Registry with cfg on addr (default 127.0.0.1:0).
func startRealWith(t *testing.T, reg *registry.Registry, cfg pushsvc.Config, addr ...string) *realAgent {
	t.Helper()
	listen := "127.0.0.1:0"
	if len(addr) > 0 {
		listen = addr[0]
	}
	ps, err := pushsvc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for i := 0; ; i++ { // a restarted agent may wait for its port
		if lis, err = net.Listen("tcp", listen); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		ps.Close()
		t.Fatal(err)
	}
	a := &realAgent{reg: reg, addr: lis.Addr().String(), ps: ps, gs: ps.NewGRPCServer(), done: make(chan struct{})}
	go func() { defer close(a.done); _ = a.gs.Serve(lis) }()
	t.Cleanup(a.stop)
	return a
}

func (a *realAgent) stop() {
	a.once.Do(func() { a.ps.Close(); a.gs.GracefulStop(); <-a.done })
}

func (a *realAgent) lookup(id string) *registry.Instance {
	if s := a.reg.Snapshot().Service("echo"); s != nil {
		return s.Instance(id)
	}
	return nil
}

// TestSessionAgentRestart: the agent restarts (its sessions end, so the
// instance is removed) and the client registers it again.
func TestSessionAgentRestart(t *testing.T) {
	a := startReal(t, nil, "127.0.0.1:0")
	c := newTestClient(t, []string{a.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, testInstance("e1"))
	if err != nil {
		t.Fatal(err)
	}
	if in := a.lookup("e1"); in == nil || in.Check.Kind != registry.CheckSession {
		t.Fatalf("registered %+v, want a session instance", in)
	}
	a.stop()
	if a.lookup("e1") != nil {
		t.Fatal("instance survived its session")
	}
	a2 := startReal(t, a.reg, a.addr)
	eventually(t, 10*time.Second, "re-registration on the restarted agent", func() bool {
		return a2.lookup("e1") != nil && reg.Registrations() == 2
	})
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if a2.lookup("e1") != nil {
		t.Fatal("still registered after Close")
	}
}

// TestSessionFailover: with two agents the registration moves to the second
// when the first stops.
func TestSessionFailover(t *testing.T) {
	a, b := startReal(t, nil, "127.0.0.1:0"), startReal(t, nil, "127.0.0.1:0")
	c := newTestClient(t, []string{a.addr, b.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, testInstance("e1"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	if a.lookup("e1") == nil || b.lookup("e1") != nil {
		t.Fatal("want the registration on the first agent only")
	}
	a.stop()
	eventually(t, 10*time.Second, "registration on the second agent", func() bool { return b.lookup("e1") != nil })
}

// TestCloseDrainsBeforeDeregister: a watcher sees the instance draining for
// at least the grace before it disappears.
func TestCloseDrainsBeforeDeregister(t *testing.T) {
	a := startReal(t, nil, "127.0.0.1:0")
	c := newTestClient(t, []string{a.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const grace = 200 * time.Millisecond
	reg, err := c.Register(ctx, testInstance("e1"), WithGrace(grace))
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, []string{"echo"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var drainedAt, goneAt time.Time
	done := make(chan error, 1)
	go func() { done <- reg.Close(ctx) }()
	for goneAt.IsZero() {
		u := nextUpdate(t, w)
		l := u.Services["echo"]
		switch {
		case len(l) == 1 && l[0].Status == StatusDraining && drainedAt.IsZero():
			drainedAt = time.Now()
		case len(l) == 0 && !drainedAt.IsZero():
			goneAt = time.Now()
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := goneAt.Sub(drainedAt); d < grace-20*time.Millisecond {
		t.Fatalf("removed %s after draining, want about %s", d, grace)
	}
}

func (in Instance) toRegistry() *registry.Instance {
	return &registry.Instance{Service: in.Service, ID: in.ID, Address: in.Address, Port: in.Port, Weight: 1}
}

// TestRegistrationLostToANewerWrite: another node registers the same key
// later; the registration learns it lost the key and stops re-registering
// it, and Close has nothing left to do.
func TestRegistrationLostToANewerWrite(t *testing.T) {
	a := startReal(t, nil, "127.0.0.1:0")
	c := newTestClient(t, []string{a.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, testInstance("e1"))
	if err != nil {
		t.Fatal(err)
	}
	newer := a.lookup("e1").Clone()
	newer.Owner, newer.Stamp, newer.Check = "n2", newer.Stamp+1, registry.Check{}
	a.reg.Apply([]registry.Delta{{Owner: "n2", Version: registry.Version{Epoch: 1, Seq: 1}, Op: registry.OpUpsert, Instance: newer, Time: time.Now(), Stamp: newer.Stamp}})
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
	if in := a.lookup("e1"); in == nil || in.Owner != "n2" || reg.Registrations() != 1 {
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
	a := startReal(t, nil, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oldProc := newTestClient(t, []string{a.addr})
	old, err := oldProc.Register(ctx, testInstance("e1"))
	if err != nil {
		t.Fatal(err)
	}
	newProc := newTestClient(t, []string{a.addr})
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
	if got := a.lookup("e1"); got == nil || got.Port != 7001 || got.Status != registry.StatusPassing {
		t.Fatalf("after the old process closed, the new process's instance is %+v", got)
	}
}
