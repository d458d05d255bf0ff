package httpapi

import (
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc"
	"github.com/herald-sd/herald/testenv/wait"
)

// gate holds back the server's writes while closed, as a congested network
// or a client that stopped reading does.
type gate struct {
	mu     sync.Mutex
	open   chan struct{} // closed while the gate is open
	held   int           // writes waiting
	closed bool
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed, g.open = true, make(chan struct{})
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
}

func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

type gatedListener struct {
	net.Listener
	g *gate
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatedConn{c, l.g}, nil
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c gatedConn) Write(b []byte) (int, error) {
	c.g.mu.Lock()
	open := c.g.open
	c.g.held++
	c.g.mu.Unlock()
	<-open
	c.g.mu.Lock()
	c.g.held--
	c.g.mu.Unlock()
	return c.Conn.Write(b)
}

// TestWatchSlowReader: while a stream cannot write, its watcher holds no
// queue; once it can, a watcher that fell further behind than WatchMaxLag
// gets the latest state as one reset snapshot, not the backlog.
func TestWatchSlowReader(t *testing.T) {
	e := newEnv(t, envOpts{push: func(c *pushsvc.Config) { c.WatchMaxLag = 5 }})
	g := newGate()
	srv := httptest.NewUnstartedServer(e.api.Handler())
	srv.Listener = gatedListener{srv.Listener, g}
	srv.Start()
	t.Cleanup(func() { g.release(); srv.Close() })
	e.srv.Close() // newEnv's; its cleanup closes this one
	e.srv = srv

	e.mustPut(t, "api", "a0")
	w := openWatch(t, e, "?service=api", "")
	if ev := w.next(t); ev.name != "snapshot" {
		t.Fatalf("first event %s", ev.name)
	}
	g.shut()
	put := func(id string) {
		if _, err := e.reg.Register(t.Context(), instance(id)); err != nil {
			t.Fatal(err)
		}
	}
	// The first change's event is held in the write; the watcher waits in
	// it while 19 more changes come.
	put("a1")
	wait.Eventually(t, 5*time.Second, "the stream's write to be held", func() bool { return g.waiting() > 0 })
	for i := 2; i <= 20; i++ {
		put(fmt.Sprintf("a%d", i))
	}
	// The watch feed follows the registry a little behind: let it take
	// all 21 changes, so that the watcher finds itself 19 behind.
	wait.Eventually(t, 5*time.Second, "the watch feed to hold every change", func() bool {
		events, _ := e.push.EncodeStats()
		return events >= 21
	})
	g.release()
	var got []string
	for {
		ev := w.nextChange(t)
		got = append(got, fmt.Sprintf("%s(%d)", ev.name, len(ev.data.Events)))
		if ev.name == "snapshot" {
			if !ev.data.Reset || len(ev.data.Events) != 21 {
				t.Fatalf("after falling 19 changes behind: %v, reset=%v; want a reset snapshot of all 21", got, ev.data.Reset)
			}
			break
		}
		if len(got) > 1 {
			t.Fatalf("the backlog came as deltas: %v; want the held delta, then a reset snapshot", got)
		}
	}
	t.Logf("events after the release: %v", got)
}

func instance(id string) *registry.Instance {
	return &registry.Instance{Service: "api", ID: id, Address: netip.MustParseAddr("10.0.0.5"), Port: 9000, Weight: registry.DefaultWeight}
}
