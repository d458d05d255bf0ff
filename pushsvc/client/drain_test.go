package client

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

// change is one status of echo/e1 as an agent saw it: passing, draining,
// or absent, and when.
type change struct {
	status string
	at     time.Time
}

// drainAgent is an agent that records echo/e1's changes, from its first
// registration on.
type drainAgent struct {
	addr    string
	changes func() []change
}

// statusWord turns "STATUS_DRAINING" into "draining"; unspecified is
// passing, as on the agent.
func statusWord(s string) string {
	if s = strings.ToLower(strings.TrimPrefix(s, "STATUS_")); s == "unspecified" {
		return "passing"
	}
	return s
}

// fakeDrainAgent records the session's ops as the fake agent handles them:
// the times are the agent's own.
func fakeDrainAgent(t *testing.T) drainAgent {
	f := startFake(t)
	return drainAgent{addr: f.addr, changes: func() []change {
		ops, times, _, _ := f.snapshot()
		var out []change
		for i, op := range ops { // "register:<status>", "set_status:<status>", "deregister"
			st := "absent"
			if _, s, ok := strings.Cut(op, ":"); ok {
				st = statusWord(s)
			}
			out = append(out, change{st, times[i]})
		}
		return out
	}}
}

// realDrainAgent records what a watcher of a real agent sees: the times are
// when the watcher got each update.
func realDrainAgent(t *testing.T) drainAgent {
	a := heraldtest.NewAgent(t)
	w, err := newTestClient(t, []string{a.Addr()}).Watch(context.Background(), []string{"echo"})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []change
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for u := range w.Updates() {
			st := "absent"
			for _, in := range u.Services["echo"] {
				if in.ID == "e1" {
					st = statusWord(in.Status.String())
				}
			}
			mu.Lock()
			if n := len(seen); n > 0 && seen[n-1].status != st || n == 0 && st != "absent" {
				seen = append(seen, change{st, time.Now()})
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Close(); <-done })
	return drainAgent{addr: a.Addr(), changes: func() []change {
		mu.Lock()
		defer mu.Unlock()
		return append([]change(nil), seen...)
	}}
}

// TestCloseDrainsThenDeregisters: Registration.Close drains the instance,
// waits the grace, then deregisters it, and a second Close does nothing.
// The fake agent pins the order of the session's ops; on a real agent a
// watcher sees the instance draining for the grace before it goes.
func TestCloseDrainsThenDeregisters(t *testing.T) {
	tests := []struct {
		name  string
		agent func(*testing.T) drainAgent
		grace time.Duration
		slack time.Duration // how early a draining may end, for times a watcher takes
	}{
		{"fake agent, no grace", fakeDrainAgent, 0, 0},
		{"fake agent, grace 150ms", fakeDrainAgent, 150 * time.Millisecond, 0},
		{"real agent, grace 200ms", realDrainAgent, 200 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.agent(t)
			c := newTestClient(t, []string{a.addr})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			reg := mustRegister(t, ctx, c, "e1", WithGrace(tc.grace))
			wait.Eventually(t, 5*time.Second, "e1 seen registered", func() bool { return len(a.changes()) > 0 })
			if err := reg.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := reg.Close(ctx); err != nil {
				t.Fatal("second Close:", err)
			}
			var got []change
			wait.Eventually(t, 5*time.Second, "e1 seen removed", func() bool {
				got = a.changes()
				return got[len(got)-1].status == "absent"
			})
			var statuses []string
			for _, ch := range got {
				statuses = append(statuses, ch.status)
			}
			if s := strings.Join(statuses, " "); s != "passing draining absent" {
				t.Fatalf("e1 went %q, want passing draining absent", s)
			}
			if d := got[2].at.Sub(got[1].at); d < tc.grace-tc.slack {
				t.Fatalf("removed %s after draining, want at least the %s grace", d, tc.grace)
			}
		})
	}
}
