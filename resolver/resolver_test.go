package resolver

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseTarget(t *testing.T) {
	tests := []struct {
		target, env string
		want        string // agents|service|tag, or "error"
	}{
		{"herald://127.0.0.1:8700/api", "", "127.0.0.1:8700|api|"},
		{"herald://h1:1,h2:2/API?tag=V1", "", "h1:1,h2:2|api|v1"},
		{"herald:///api", "", "127.0.0.1:8700|api|"},
		{"herald:///api", "10.0.0.1:9,10.0.0.2:9", "10.0.0.1:9,10.0.0.2:9|api|"},
		{"herald://[::1]:8700/api", "", "[::1]:8700|api|"},
		{"herald://h:1/", "", "error"},
		{"herald://h:1/a/b", "", "error"},
		{"dns:///api", "", "error"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			t.Setenv("HERALD_ADDR", tc.env)
			u, err := url.Parse(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseTarget(*u)
			s := "error"
			if err == nil {
				s = strings.Join(got.Agents, ",") + "|" + got.Service + "|" + got.Tag
			}
			if s != tc.want {
				t.Fatalf("got %q (err %v), want %q", s, err, tc.want)
			}
		})
	}
}

// sender calls cc in a loop and records which backend answered, until stop.
type sender struct {
	cc       *grpc.ClientConn
	failures atomic.Int64
	calls    atomic.Int64
	mu       sync.Mutex
	seen     map[string]time.Time // backend -> first answer
	last     map[string]time.Time // backend -> start of the last call it answered
	stop     context.CancelFunc
	done     chan struct{}
}

func startSender(cc *grpc.ClientConn) *sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{cc: cc, seen: map[string]time.Time{}, last: map[string]time.Time{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
			start := time.Now()
			name, err := echo(ctx, cc)
			if ctx.Err() != nil {
				return
			}
			s.calls.Add(1)
			if err != nil {
				s.failures.Add(1)
				continue
			}
			s.mu.Lock()
			if _, ok := s.seen[name]; !ok {
				s.seen[name] = time.Now()
			}
			s.last[name] = start
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sender) close() { s.stop(); <-s.done }

func (s *sender) firstSeen(name string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.seen[name]
	return t, ok
}

func (s *sender) lastStart(name string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[name]
}

func register(t *testing.T, reg *registry.Registry, in *registry.Instance) {
	t.Helper()
	if _, err := reg.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// TestScaleOut: a backend registered while a round_robin client is running
// gets RPCs; the delay from the register call's return is logged.
func TestScaleOut(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	register(t, reg, b1.instance())
	cc, _ := dial(t, "herald://"+a.Addr()+"/echo")
	s := startSender(cc)
	defer s.close()
	wait.Eventually(t, 5*time.Second, "b1 answering", func() bool { _, ok := s.firstSeen("b1"); return ok })
	register(t, reg, b2.instance())
	registered := time.Now()
	wait.Eventually(t, 5*time.Second, "b2 answering", func() bool { _, ok := s.firstSeen("b2"); return ok })
	first, _ := s.firstSeen("b2")
	t.Logf("scale out: first RPC on the new backend %s after its registration", first.Sub(registered))
	if n := s.failures.Load(); n != 0 {
		t.Fatalf("%d failed RPCs", n)
	}
}

// TestWeightChangeKeepsConnection: a new weight or tag reaches the balancer
// as attributes, without making the client redial the backend.
func TestWeightChangeKeepsConnection(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	b1 := startBackend(t, "b1")
	in := b1.instance()
	register(t, reg, in)
	cc, rb := dial(t, "herald://"+a.Addr()+"/echo")
	s := startSender(cc)
	defer s.close()
	wait.Eventually(t, 5*time.Second, "b1 answering", func() bool { _, ok := s.firstSeen("b1"); return ok })
	for w := uint32(2); w <= 5; w++ {
		c := in.Clone()
		c.Weight = w
		c.Tags = []string{fmt.Sprintf("v%d", w)}
		register(t, reg, c)
		wait.Eventually(t, 5*time.Second, fmt.Sprintf("weight %d pushed", w), func() bool {
			return len(mustPushes(rb)) >= int(w)
		})
	}
	hits := b1.Hits()
	wait.Eventually(t, 5*time.Second, "RPCs keep flowing", func() bool { return b1.Hits() > hits+10 })
	if n := b1.accepts.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections across 4 weight changes, want 1", n)
	}
	if n := s.failures.Load(); n != 0 {
		t.Fatalf("%d failed RPCs", n)
	}
}

// TestScaleIn: once the drain of a backend is pushed, no RPC started after
// the push reaches it.
func TestScaleIn(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	register(t, reg, b1.instance())
	register(t, reg, b2.instance())
	cc, rb := dial(t, "herald://"+a.Addr()+"/echo")
	s := startSender(cc)
	defer s.close()
	wait.Eventually(t, 5*time.Second, "both answering", func() bool {
		_, ok1 := s.firstSeen("b1")
		_, ok2 := s.firstSeen("b2")
		return ok1 && ok2
	})
	drained := time.Now()
	if _, _, err := reg.SetStatus(context.Background(), "echo", "b2", registry.StatusDraining); err != nil {
		t.Fatal(err)
	}
	var pushed time.Time
	wait.Eventually(t, 5*time.Second, "the drain pushed", func() bool {
		states, times, _ := rb.pushes()
		if n := len(states); n > 0 && slices.Equal(states[n-1], []string{"b1"}) {
			pushed = times[n-1]
			return true
		}
		return false
	})
	hits := b1.Hits()
	wait.Eventually(t, 5*time.Second, "100 more RPCs on b1", func() bool { return b1.Hits() >= hits+100 })
	if last := s.lastStart("b2"); last.After(pushed) {
		t.Fatalf("b2 got an RPC started %s after the drain was pushed", last.Sub(pushed))
	}
	t.Logf("scale in: drain pushed %s after the status change", pushed.Sub(drained))
	if n := s.failures.Load(); n != 0 {
		t.Fatalf("%d failed RPCs", n)
	}
}

// TestFailover: the watched agent is stopped gracefully, then the next one
// is killed; RPCs never fail and new backends keep arriving through the
// next agent.
func TestFailover(t *testing.T) {
	// Three agents of one cluster: they serve one registry.
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() }) // after the agents' cleanups
	var agents []*heraldtest.Agent
	for range 3 {
		agents = append(agents, heraldtest.NewAgent(t, heraldtest.WithRegistry(reg)))
	}
	b := []*backend{startBackend(t, "b0"), startBackend(t, "b1"), startBackend(t, "b2")}
	register(t, reg, b[0].instance())
	cc, rb := dial(t, "herald://"+agents[0].Addr()+","+agents[1].Addr()+","+agents[2].Addr()+"/echo")
	s := startSender(cc)
	defer s.close()
	wait.Eventually(t, 5*time.Second, "b0 answering", func() bool { _, ok := s.firstSeen("b0"); return ok })
	steps := []struct {
		name string
		stop func(*heraldtest.Agent)
	}{{"graceful stop", (*heraldtest.Agent).Stop}, {"hard kill", (*heraldtest.Agent).Kill}}
	for i, st := range steps {
		st.stop(agents[i])
		stopped := time.Now()
		register(t, reg, b[i+1].instance())
		wait.Eventually(t, 10*time.Second, b[i+1].name+" answering after "+st.name, func() bool {
			_, ok := s.firstSeen(b[i+1].name)
			return ok
		})
		agent, ok := rb.watcher().Connected()
		if !ok || agent != agents[i+1].Addr() {
			t.Fatalf("%s: watching %q (connected %v), want %q", st.name, agent, ok, agents[i+1].Addr())
		}
		t.Logf("failover after %s: new backend served %s after the agent stopped", st.name, time.Since(stopped))
	}
	if n, calls := s.failures.Load(), s.calls.Load(); n != 0 {
		t.Fatalf("%d of %d RPCs failed", n, calls)
	}
	for _, st := range mustPushes(rb) {
		if len(st) == 0 {
			t.Fatal("an empty list was pushed")
		}
	}
}

func mustPushes(rb *recordingBuilder) [][]string {
	s, _, _ := rb.pushes()
	return s
}

// TestEmptyPushProtection: with the protection on, removing the last
// serving instance keeps the last list; off, the empty list is pushed.
func TestEmptyPushProtection(t *testing.T) {
	tests := []struct {
		name    string
		protect bool
		want    string // pushes, ids joined by ",", lists by " "
	}{
		{"on", true, "b1 b2"},
		{"off", false, "b1 - b2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := heraldtest.NewAgent(t)
			reg := a.Registry()
			b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
			cc, rb := dial(t, "herald://"+a.Addr()+"/echo", WithEmptyPushProtection(tc.protect))
			cc.Connect()
			wait.Eventually(t, 5*time.Second, "no-instance error before anything registered", func() bool {
				_, _, errs := rb.pushes()
				return len(errs) > 0
			})
			register(t, reg, b1.instance())
			wait.Eventually(t, 5*time.Second, "b1 pushed", func() bool { return len(mustPushes(rb)) == 1 })
			if _, err := reg.Deregister(context.Background(), registry.Key{Service: "echo", ID: "b1"}); err != nil {
				t.Fatal(err)
			}
			if !tc.protect {
				wait.Eventually(t, 5*time.Second, "the empty list pushed", func() bool { return len(mustPushes(rb)) == 2 })
			}
			register(t, reg, b2.instance())
			wait.Eventually(t, 5*time.Second, "b2 pushed", func() bool {
				p := mustPushes(rb)
				return len(p) > 0 && slices.Equal(p[len(p)-1], []string{"b2"})
			})
			var got []string
			for _, p := range mustPushes(rb) {
				if len(p) == 0 {
					p = []string{"-"}
				}
				got = append(got, strings.Join(p, ","))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("pushes %q, want %q", g, tc.want)
			}
		})
	}
}

// TestTransientDisconnect: while the agent is down nothing is pushed and RPCs
// keep working; after it is back, ResolveNow reconnects at once although the
// backoff is long, and the watch resumes.
func TestTransientDisconnect(t *testing.T) {
	a := heraldtest.NewAgent(t)
	reg := a.Registry()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	register(t, reg, b1.instance())
	cc, rb := dial(t, "herald://"+a.Addr()+"/echo",
		WithClientOptions(client.WithBackoff(client.Backoff{Base: time.Minute, Max: time.Minute})))
	s := startSender(cc)
	defer s.close()
	wait.Eventually(t, 5*time.Second, "b1 answering", func() bool { _, ok := s.firstSeen("b1"); return ok })
	a.Kill()
	wait.Eventually(t, 5*time.Second, "the watch to notice", func() bool { _, ok := rb.watcher().Connected(); return !ok })
	pushesBefore := len(mustPushes(rb))
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	register(t, reg, b2.instance())
	start := time.Now()
	wait.Eventually(t, 5*time.Second, "reconnect on ResolveNow", func() bool {
		rb.resolver.ResolveNow(grpcresolver.ResolveNowOptions{})
		_, ok := rb.watcher().Connected()
		return ok
	})
	wait.Eventually(t, 5*time.Second, "b2 answering", func() bool { _, ok := s.firstSeen("b2"); return ok })
	t.Logf("reconnected to the restarted agent %s after ResolveNow", time.Since(start))
	if p := mustPushes(rb); len(p) != pushesBefore+1 || !slices.Equal(p[len(p)-1], []string{"b1", "b2"}) {
		t.Fatalf("pushes %v: want exactly one new push [b1 b2] after the reconnect", p)
	}
	if n := s.failures.Load(); n != 0 {
		t.Fatalf("%d failed RPCs", n)
	}
}

// TestClose: Build then Close leaves no goroutine behind (goleak checks in
// TestMain), also while the agent is unreachable.
func TestClose(t *testing.T) {
	for _, reachable := range []bool{true, false} {
		addr := "127.0.0.1:1"
		if reachable {
			addr = heraldtest.NewAgent(t).Addr()
		}
		cc, rb := dial(t, "herald://"+addr+"/echo")
		cc.Connect()
		wait.Eventually(t, 5*time.Second, "the resolver built", func() bool { return rb.watcher() != nil })
		cc.Close()
		select {
		case <-rb.watcher().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("watcher still running after Close")
		}
	}
}

// TestUnreachableAgentFailsFast: with no agent answering, RPCs fail with
// Unavailable at once instead of waiting for their deadline.
func TestUnreachableAgentFailsFast(t *testing.T) {
	cc, _ := dial(t, "herald://127.0.0.1:1/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := echo(ctx, cc)
	if status.Code(err) != codes.Unavailable || time.Since(start) > time.Second {
		t.Fatalf("err %v after %s, want Unavailable within 1s", err, time.Since(start))
	}
}
