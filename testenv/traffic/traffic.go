// Package traffic holds the traffic-control scenarios of issue 14 (weights,
// a stale client's safe retry, a rolling restart) and the parts they are
// built from: echo-server processes, a pausable TCP proxy and a load of
// herald-resolved gRPC clients. The testenv tests run the scenarios and
// assert their outcomes; testenv/cmd/benchall runs the same scenarios and
// prints their figures.
//
// The backends are real cmd/echo-server processes; the agents are whatever
// the caller started (real `herald agent` processes). Every server listens
// on loopback, and every load is bounded in time by its context.
//
// It must never import the registry (cluster/...), the server (pushsvc) or
// cmd/herald: it speaks to agents only through the public API.
package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
)

// Env is what a scenario runs against.
type Env struct {
	// Agents are the gRPC addresses of running agents of one cluster
	// (at least one; StaleClient needs two).
	Agents []string
	// EchoServer is the path of a built cmd/echo-server.
	EchoServer string
	// Dir receives the backends' logs.
	Dir string
}

// Service is the service name the backends register.
const Service = "echo"

// Stats is what an echo-server prints when it stops.
type Stats struct {
	ID                  string `json:"id"`
	Served              uint64 `json:"served"`
	Refused             uint64 `json:"refused"`
	ServedWhileRefusing uint64 `json:"served_while_refusing"`
}

// Backend is one echo-server process.
type Backend struct {
	ID     string
	Addr   string // 127.0.0.1:port
	Agent  string
	Weight uint32
	Grace  time.Duration

	env    Env
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	done   chan struct{}
}

// StartBackend starts an echo-server that registers id at addr through
// agent, and waits until the agent lists it.
func StartBackend(ctx context.Context, env Env, id, addr, agent string, weight uint32, grace time.Duration) (*Backend, error) {
	b := &Backend{ID: id, Addr: addr, Agent: agent, Weight: weight, Grace: grace, env: env}
	return b, b.start(ctx)
}

func (b *Backend) start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(b.env.Dir, b.ID+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	b.stdout = new(bytes.Buffer)
	b.done = make(chan struct{})
	b.cmd = exec.Command(b.env.EchoServer, "-id", b.ID, "-listen", b.Addr, "-herald", b.Agent,
		"-weight", fmt.Sprint(b.Weight), "-grace", b.Grace.String())
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("traffic: start %s: %w", b.ID, err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	err = until(ctx, 15*time.Second, func() bool {
		select {
		case <-b.done:
			return true
		default:
		}
		return b.registered(ctx)
	})
	select {
	case <-b.done:
		return fmt.Errorf("traffic: echo-server %s exited; see %s", b.ID, logf.Name())
	default:
	}
	if err != nil {
		b.Kill()
		return fmt.Errorf("traffic: echo-server %s not registered: %w", b.ID, err)
	}
	return nil
}

// registered reports whether the backend's agent lists it as passing.
func (b *Backend) registered(ctx context.Context) bool {
	c, err := client.New([]string{b.Agent}, client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	insts, err := instances(ctx, c)
	if err != nil {
		return false
	}
	for _, in := range insts {
		if in.ID == b.ID && in.AddrPort().String() == b.Addr && in.Status == client.StatusPassing {
			return true
		}
	}
	return false
}

// Stop sends SIGTERM (the echo-server drains, waits its grace, deregisters
// and stops) and returns the counts it printed.
func (b *Backend) Stop(ctx context.Context) (Stats, error) {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-ctx.Done():
		b.Kill()
		return Stats{}, ctx.Err()
	case <-time.After(b.Grace + 15*time.Second):
		b.Kill()
		return Stats{}, fmt.Errorf("traffic: echo-server %s did not stop after SIGTERM", b.ID)
	}
	var st Stats
	if err := json.Unmarshal(bytes.TrimSpace(b.stdout.Bytes()), &st); err != nil {
		return st, fmt.Errorf("traffic: echo-server %s stats %q: %w", b.ID, b.stdout.String(), err)
	}
	return st, nil
}

// Restart starts the backend again at the same address with the same id.
func (b *Backend) Restart(ctx context.Context) error { return b.start(ctx) }

// Kill stops the process at once; it is idempotent.
func (b *Backend) Kill() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Kill()
	<-b.done
}

// instances lists the service's instances through one snapshot of a watch.
func instances(ctx context.Context, c *client.Client) ([]client.Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := c.Watch(ctx, []string{Service})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	select {
	case u, ok := <-w.Updates():
		if !ok {
			return nil, errors.New("traffic: watch ended")
		}
		return u.Services[Service], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// until polls cond every 20ms until it holds, ctx ends or timeout passes.
func until(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// FreeAddr returns a free 127.0.0.1 TCP address whose port is below the
// kernel's ephemeral range (32768-60999), so that a backend restarted on it
// does not find it taken by an outgoing connection; each is handed out once
// per process.
func FreeAddr() (string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if portsUsed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[port] = true
		return l.Addr().String(), nil
	}
	return "", errors.New("traffic: no free port below the ephemeral range")
}
