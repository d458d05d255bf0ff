package pushsvc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv("PUSHSVC_SESSION_CHILD"); addr != "" {
		os.Exit(sessionChild(addr))
	}
	goleak.VerifyTestMain(m)
}

// testEnv is a registry, a pushsvc server on a real loopback socket and a
// client connection to it.
type testEnv struct {
	reg    *registry.Registry
	srv    *Server
	addr   string
	cc     *grpc.ClientConn
	client heraldpb.HeraldClient
}

type envOpts struct {
	reg    registry.Config
	server func(*Config)
	// plainGRPC registers the service on a grpc.NewServer() without the
	// server's options (and so without its codec).
	plainGRPC bool
}

func newEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	if o.reg.Node == "" {
		o.reg.Node = "node-a"
	}
	if o.reg.CheckInterval == 0 {
		o.reg.CheckInterval = 10 * time.Millisecond
	}
	reg, err := registry.New(o.reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Registry = reg
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.server != nil {
		o.server(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var gs *grpc.Server
	// Stop waits for the handlers, so that a test's cleanups run after
	// every handler has returned.
	if o.plainGRPC {
		gs = grpc.NewServer(grpc.WaitForHandlers(true))
		srv.Register(gs)
	} else {
		gs = srv.NewGRPCServer(grpc.WaitForHandlers(true))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	e := &testEnv{reg: reg, srv: srv, addr: lis.Addr().String()}
	e.cc = e.dial(t)
	e.client = heraldpb.NewHeraldClient(e.cc)
	t.Cleanup(func() {
		srv.Close()
		gs.Stop()
		wg.Wait()
		reg.Close()
	})
	return e
}

// dial opens a new client connection, closed at cleanup.
func (e *testEnv) dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func inst(service, id string) *heraldpb.Instance {
	return &heraldpb.Instance{Service: service, Id: id, Address: "10.0.0.1", Port: 9000}
}

// wantCode checks err's code and that its message mentions every word.
func wantCode(t testing.TB, err error, code codes.Code, words ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("code = %s (%v), want %s", st.Code(), err, code)
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Fatalf("message %q does not mention %q", st.Message(), w)
		}
	}
}

// instanceOf returns the instance from the registry's snapshot, or nil.
func (e *testEnv) instanceOf(service, id string) *registry.Instance {
	svc := e.reg.Snapshot().Service(service)
	if svc == nil {
		return nil
	}
	return svc.Instance(id)
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func key(service, id string) *heraldpb.InstanceKey {
	return &heraldpb.InstanceKey{Service: service, Id: id}
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
