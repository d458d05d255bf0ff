package client

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/pushsvc/heraldtest"
	"github.com/herald-sd/herald/testenv/wait"
)

// cutProxy forwards TCP to target. cut drops every connection, and while it
// is down new connections are refused by closing them at once.
type cutProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{lis: lis, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { lis.Close(); p.cut(true); p.wg.Wait() })
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
		p.mu.Unlock()
	}
}

// cut drops every connection and sets whether new ones are refused.
func (p *cutProxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestWatchResumeReal breaks a watch stream between the client and a real
// agent and checks what the reconnect gets: only the missed deltas when the
// agent still has them, a reset snapshot when it does not.
func TestWatchResumeReal(t *testing.T) {
	tests := []struct {
		name      string
		changes   int // made while disconnected
		wantReset bool
	}{
		{"recent revision gets deltas", 1, false},
		{"too old revision gets a reset", 40, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := registry.New(registry.Config{Node: "n1", History: 16})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg.Close() }) // after the agent's cleanup
			a := heraldtest.NewAgent(t, heraldtest.WithRegistry(reg), heraldtest.WithConfig(pushsvc.Config{WatchHistory: 16, WatchMaxLag: 16}))
			p := startProxy(t, a.Addr())
			c := newTestClient(t, []string{p.lis.Addr().String()})
			put := func(id string) {
				in := testInstance(id).toRegistry()
				if _, err := reg.Register(context.Background(), in); err != nil {
					t.Fatal(err)
				}
			}
			put("keep")
			w, err := c.Watch(context.Background(), []string{"echo"})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if u := nextUpdate(t, w); len(u.Services["echo"]) != 1 {
				t.Fatalf("first update %v", u.Services)
			}
			p.cut(true)
			wait.Eventually(t, 5*time.Second, "the watch to notice the cut", func() bool { _, ok := w.Connected(); return !ok })
			for i := 0; i < tc.changes; i++ {
				put("x")
				if _, err := reg.Deregister(context.Background(), registry.Key{Service: "echo", ID: "x"}); err != nil {
					t.Fatal(err)
				}
			}
			put("new")
			p.cut(false)
			w.Reconnect()
			u := nextUpdate(t, w)
			if got := ids(u.Services["echo"]); got != "keep,new" || u.Reset != tc.wantReset {
				t.Fatalf("after reconnect: ids %q reset %v, want keep,new reset %v", got, u.Reset, tc.wantReset)
			}
		})
	}
}
