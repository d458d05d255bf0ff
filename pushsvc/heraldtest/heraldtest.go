// Package heraldtest runs a Herald agent inside a test process: a registry,
// Herald's gRPC API (pushsvc) and a gRPC server on 127.0.0.1:0. It serves
// the same API as a real agent, so the Go client (pushsvc/client) and the
// herald resolver talk to it as they would to `herald agent`; it has no
// Serf, no DNS and no data dir. Herald's own tests use it, and so can
// yours, as grpc-go's resolver/manual serves the tests of code that
// resolves names.
//
// It owns starting, stopping and restarting such an agent, nothing else. It
// imports pushsvc and cluster/registry; the server's non-test code must
// never import it.
package heraldtest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/testenv/wait"
)

// Node is the node name of the registry an agent makes for itself: the
// Node of every instance registered through it.
const Node = "heraldtest"

// Agent is one in-process agent. Its methods are safe for concurrent use.
type Agent struct {
	reg    *registry.Registry
	ownReg bool // made by the agent, closed by Close
	cfg    pushsvc.Config
	addr   string

	mu      sync.Mutex
	ps      *pushsvc.Server
	gs      *grpc.Server
	serving chan struct{} // closed when Serve returns; nil while stopped
	closed  bool
}

type options struct {
	reg *registry.Registry
	cfg *pushsvc.Config
}

// Option configures an Agent.
type Option func(*options)

// WithRegistry serves reg instead of a registry of the agent's own. Agents
// that share a registry act as the agents of one cluster whose replication
// is instant: a write through one is seen through all. The caller closes
// reg, after the agents.
func WithRegistry(reg *registry.Registry) Option { return func(o *options) { o.reg = reg } }

// WithConfig serves with cfg (its Registry is set to the agent's registry,
// and a nil Logger discards). Default: pushsvc's defaults, a discarding
// logger and a ProgressInterval of 200ms, so that a watcher's progress and
// its idle timeout play out within a test.
func WithConfig(cfg pushsvc.Config) Option { return func(o *options) { o.cfg = &cfg } }

// NewAgent starts an agent for the test and stops it (and closes its own
// registry) when the test ends. It fails the test if the agent cannot
// start.
func NewAgent(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	a, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// Start starts an agent; Close stops it. It is NewAgent for code that has
// no testing.TB, such as an Example or a TestMain.
func Start(opts ...Option) (*Agent, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	a := &Agent{reg: o.reg}
	if a.reg == nil {
		reg, err := registry.New(registry.Config{Node: Node})
		if err != nil {
			return nil, fmt.Errorf("heraldtest: %w", err)
		}
		a.reg, a.ownReg = reg, true
	}
	a.cfg = pushsvc.Config{ProgressInterval: 200 * time.Millisecond}
	if o.cfg != nil {
		a.cfg = *o.cfg
	}
	a.cfg.Registry = a.reg
	if a.cfg.Logger == nil {
		a.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		err = a.serve(lis)
	}
	if err != nil {
		if a.ownReg {
			a.reg.Close()
		}
		return nil, fmt.Errorf("heraldtest: start: %w", err)
	}
	a.addr = lis.Addr().String()
	return a, nil
}

// serve starts the API on lis. Called with a.mu held or before a is shared.
func (a *Agent) serve(lis net.Listener) error {
	ps, err := pushsvc.New(a.cfg)
	if err != nil {
		lis.Close()
		return err
	}
	// Stop waits for the handlers, so that a killed agent's sessions have
	// ended (and their instances are gone) when Kill returns.
	a.ps, a.gs, a.serving = ps, ps.NewGRPCServer(grpc.WaitForHandlers(true)), make(chan struct{})
	gs, serving := a.gs, a.serving
	go func() { defer close(serving); _ = gs.Serve(lis) }()
	return nil
}

// Addr is the agent's gRPC address, host:port. It stays the same across
// restarts.
func (a *Agent) Addr() string { return a.addr }

// Registry is the registry the agent serves: read its Snapshot to see what
// was registered, or write to it as another node's replication would.
func (a *Agent) Registry() *registry.Registry { return a.reg }

// Instance returns the instance service/id as the agent's registry holds
// it now, or nil.
func (a *Agent) Instance(service, id string) *registry.Instance {
	if svc := a.reg.Snapshot().Service(service); svc != nil {
		return svc.Instance(id)
	}
	return nil
}

// Stop stops the agent gracefully, as a SIGTERM'd agent's API does: it ends
// every Watch and Session stream (the sessions' instances are removed),
// then stops the gRPC server once its calls are done. The registry keeps
// everything else. Stop on a stopped agent does nothing.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stop(true)
}

// Kill stops the agent at once, as a crash would: every connection drops,
// then the streams end (the sessions' instances are removed). Kill on a
// stopped agent does nothing.
func (a *Agent) Kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stop(false)
}

// stop is Stop (graceful) or Kill. Called with a.mu held.
func (a *Agent) stop(graceful bool) {
	if a.serving == nil {
		return
	}
	if graceful {
		a.ps.Close()
		a.gs.GracefulStop()
	} else {
		a.gs.Stop()
		a.ps.Close()
	}
	<-a.serving
	a.serving = nil
}

// Restart starts a stopped agent again on the same address and registry; a
// running one is killed first. Clients reconnect to it as to a restarted
// agent.
func (a *Agent) Restart() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("heraldtest: restart: the agent is closed")
	}
	a.stop(false)
	// The address is free once the old listener is closed; the retries only
	// cover a slow release by the kernel.
	var lis net.Listener
	if _, err := wait.Until(5*time.Second, 20*time.Millisecond, func() (err error) {
		lis, err = net.Listen("tcp", a.addr)
		return err
	}); err != nil {
		return fmt.Errorf("heraldtest: restart on %s: %w", a.addr, err)
	}
	if err := a.serve(lis); err != nil {
		return fmt.Errorf("heraldtest: restart: %w", err)
	}
	return nil
}

// Close kills the agent and closes its registry if the agent made it. It
// is idempotent.
func (a *Agent) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	a.stop(false)
	if a.ownReg {
		a.reg.Close()
	}
}
