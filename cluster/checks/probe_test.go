package checks

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/testenv/wait"
)

func probe(t *testing.T, c registry.Check) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return NetProber{}.Probe(ctx, c)
}

// TestProbesAgainstRealBackends: a TCP port open and closed; an HTTP
// endpoint answering 200, 429, 503 and a redirect; a gRPC health service
// SERVING, NOT_SERVING and without the service asked for.
func TestProbesAgainstRealBackends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	tcp := registry.Check{Kind: registry.CheckTCP, Target: addr}
	if r := probe(t, tcp); r.Status != registry.StatusPassing {
		t.Fatalf("tcp open: %+v", r)
	}
	ln.Close()
	if r := probe(t, tcp); r.Status != registry.StatusCritical || !strings.Contains(r.Output, "refused") {
		t.Fatalf("tcp closed: %+v", r)
	}

	var code atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code.Load() == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("db: " + strings.Repeat("x", 1000)))
	}))
	defer srv.Close()
	hc := registry.Check{Kind: registry.CheckHTTP, Target: srv.URL + "/health"}
	for _, tt := range []struct {
		code int32
		want registry.Status
		out  string
	}{
		{200, registry.StatusPassing, "HTTP 200 OK"},
		{204, registry.StatusPassing, "HTTP 204 No Content"},
		{429, registry.StatusWarning, "HTTP 429 Too Many Requests"},
		{503, registry.StatusCritical, "HTTP 503 Service Unavailable"},
		{302, registry.StatusCritical, "HTTP 302 Found"},
	} {
		code.Store(tt.code)
		r := probe(t, hc)
		if r.Status != tt.want || !strings.HasPrefix(r.Output, tt.out) || len(clip(r.Output)) > registry.MaxCheckOutput {
			t.Errorf("http %d: %+v; want %s and output %q...", tt.code, r, tt.want, tt.out)
		}
	}

	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gln)
	defer gs.Stop()
	hs.SetServingStatus("api.v1.Echo", healthpb.HealthCheckResponse_SERVING)
	g := func(target string) Result {
		return probe(t, registry.Check{Kind: registry.CheckGRPC, Target: target})
	}
	if r := g(gln.Addr().String()); r.Status != registry.StatusPassing {
		t.Errorf("grpc server health: %+v", r)
	}
	if r := g(gln.Addr().String() + "/api.v1.Echo"); r.Status != registry.StatusPassing || r.Output != "grpc health: SERVING" {
		t.Errorf("grpc SERVING: %+v", r)
	}
	hs.SetServingStatus("api.v1.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := g(gln.Addr().String() + "/api.v1.Echo"); r.Status != registry.StatusCritical || r.Output != "grpc health: NOT_SERVING" {
		t.Errorf("grpc NOT_SERVING: %+v", r)
	}
	if r := g(gln.Addr().String() + "/nosuch"); r.Status != registry.StatusCritical || !strings.Contains(r.Output, "NotFound") {
		t.Errorf("grpc unknown service: %+v", r)
	}
}

// TestRunnerWithRegistry runs the runner on a real registry: a TCP backend
// that closes turns its instance critical within interval + timeout + 1s,
// with the output recorded; reopened, it passes again; deregistered, its
// probes stop.
func TestRunnerWithRegistry(t *testing.T) {
	cfg := registry.DefaultConfig()
	cfg.Node = "n1"
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	r := New(Config{Source: reg, Writer: reg})
	r.Start()
	defer r.Close()
	in := &registry.Instance{Service: "api", ID: "a1", Address: netip.MustParseAddr("127.0.0.1"), Port: 9000,
		Check: registry.Check{Kind: registry.CheckTCP, Target: addr, Interval: time.Second, Timeout: 500 * time.Millisecond}}
	if _, err := reg.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	status := func() (registry.Status, string) {
		svc := reg.Snapshot().Service("api")
		if svc == nil || svc.Instance("a1") == nil {
			return registry.StatusUnknown, ""
		}
		got := svc.Instance("a1")
		return got.Status, got.CheckOutput
	}
	wait.Eventually(t, 3*time.Second, "the first probe", func() bool { p, _ := r.Stats(); return p > 0 })
	ln.Close()
	closed := time.Now()
	wait.Eventually(t, 1*time.Second+500*time.Millisecond+time.Second, "critical after the port closed", func() bool {
		st, out := status()
		return st == registry.StatusCritical && strings.Contains(out, "refused")
	})
	t.Logf("critical %s after the port closed", time.Since(closed).Round(time.Millisecond))
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	wait.Eventually(t, 3*time.Second, "passing after the port reopened", func() bool { st, _ := status(); return st == registry.StatusPassing })
	if _, err := reg.Deregister(context.Background(), in.Key()); err != nil {
		t.Fatal(err)
	}
	r.Recheck()
	wait.Eventually(t, 3*time.Second, "probes stop after deregistration", func() bool {
		p1, _ := r.Stats()
		time.Sleep(1500 * time.Millisecond) // longer than the interval: a probe would show
		p2, _ := r.Stats()
		return p1 == p2
	})
}

// TestHTTPOutputHoldsNoBody: an http check's output (which every reader of
// the service sees, on every node) carries the status line only, never the
// body: a token that may register a check on an internal URL (a cloud
// metadata endpoint, an admin page) must not read that URL back through it.
func TestHTTPOutputHoldsNoBody(t *testing.T) {
	const secret = "AccessKeyId=ASIA-SECRET"
	for _, code := range []int{http.StatusOK, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(secret))
		}))
		r := probe(t, registry.Check{Kind: registry.CheckHTTP, Target: srv.URL + "/latest/meta-data/"})
		srv.Close()
		if strings.Contains(r.Output, "SECRET") || !strings.HasPrefix(r.Output, "HTTP "+strconv.Itoa(code)) {
			t.Errorf("HTTP %d: output %q; want the status line only", code, r.Output)
		}
	}
}

// TestSlowServiceCannotStarveOthers: whoever may register in one service
// points its checks at a target that never answers, with long timeouts.
// They hold at most MaxPerService workers: another service's check still
// probes on time and turns critical when its port closes.
func TestSlowServiceCannotStarveOthers(t *testing.T) {
	cfg := registry.DefaultConfig()
	cfg.Node = "n1"
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	hang := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(hang)
	r := New(Config{Source: reg, Writer: reg, Concurrency: 4})
	r.Start()
	defer r.Close()
	ctx := context.Background()
	for i := range 40 {
		in := &registry.Instance{Service: "junk", ID: "j" + strconv.Itoa(i), Address: netip.MustParseAddr("127.0.0.1"), Port: 80,
			Check: registry.Check{Kind: registry.CheckHTTP, Target: silent.URL, Interval: time.Second, Timeout: time.Second}}
		if _, err := reg.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &registry.Instance{Service: "api", ID: "a1", Address: netip.MustParseAddr("127.0.0.1"), Port: 9000,
		Check: registry.Check{Kind: registry.CheckTCP, Target: ln.Addr().String(), Interval: time.Second, Timeout: 500 * time.Millisecond}}
	if _, err := reg.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	wait.Eventually(t, 4*time.Second, "api/a1 critical while junk's 40 checks hang", func() bool {
		svc := reg.Snapshot().Service("api")
		return svc != nil && svc.Instance("a1") != nil && svc.Instance("a1").Status == registry.StatusCritical
	})
}
