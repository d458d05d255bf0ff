package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// Active checks across a cluster of 3 real agents, with real backends on
// loopback, registered on node 0 and observed through node 1's and node
// 2's DNS and watch streams:
//   - TCP: the backend's port closes: critical everywhere within interval +
//     timeout + 1s; it reopens: passing again.
//   - HTTP: 503 is critical; 429 is a warning that DNS still serves.
//   - gRPC: the backend's health set to NOT_SERVING: critical.
//   - deregister-after: an instance critical past it is removed everywhere.
//   - the owner fails: its probes stop with it and the cluster reaps its
//     instances.
func TestActiveCheckScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("scenario")
	}
	c := Start(t, Options{Nodes: 3, ReapFailed: 2 * time.Second})
	views := []*streamView{watchNode(t, c, 1), watchNode(t, c, 2)}
	const interval, timeout = time.Second, 500 * time.Millisecond
	bound := interval + timeout + time.Second
	register := func(svc, id string, kind heraldpb.Check_Kind, target string, deregisterAfter time.Duration) {
		t.Helper()
		check := &heraldpb.Check{Kind: kind, Target: target, Interval: durationpb.New(interval), Timeout: durationpb.New(timeout)}
		if deregisterAfter > 0 {
			check.DeregisterAfter = durationpb.New(deregisterAfter)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.API(0).Register(ctx, &heraldpb.RegisterRequest{Instance: &heraldpb.Instance{
			Service: svc, Id: id, Address: "10.9.0.1", Port: 80, Check: check}}); err != nil {
			t.Fatal(err)
		}
	}
	// everywhere reports whether nodes 1 and 2 agree: DNS serves svc or not,
	// and both watch streams hold the instance in status st (or not at all).
	everywhere := func(svc, id string, served bool, st client.Status, present bool) func() error {
		return func() error {
			for _, i := range []int{1, 2} {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ans, err := c.Query(ctx, i, svc+".service.herald.", dns.TypeA)
				cancel()
				if err != nil {
					return err
				}
				if got := len(ans.Addrs) == 1; got != served {
					return fmt.Errorf("node %d DNS %s: %v, want served=%v", i, svc, ans.Addrs, served)
				}
			}
			for _, v := range views {
				in, ok := v.instance(svc, id)
				if ok != present || ok && in.Status != st {
					return fmt.Errorf("watch on %s: %s/%s present=%v status=%s, want present=%v %s", v.node, svc, id, ok, in.Status, present, st)
				}
			}
			return nil
		}
	}

	// TCP.
	ln := listenBackend(t)
	go acceptAndClose(ln)
	tcpAddr := ln.Addr().String()
	register("tcp-svc", "t1", heraldpb.Check_KIND_TCP, tcpAddr, 0)
	wait.Eventually(t, 10*time.Second, "tcp-svc passing everywhere", everywhere("tcp-svc", "t1", true, client.StatusPassing, true))
	ln.Close()
	d := wait.Eventually(t, bound, "tcp-svc critical everywhere after its port closed", everywhere("tcp-svc", "t1", false, client.StatusCritical, true))
	Figure(t, "check_tcp_close_to_critical_everywhere_seconds", d.Seconds())
	if in, _ := views[1].instance("tcp-svc", "t1"); !strings.Contains(in.CheckOutput, "refused") {
		t.Errorf("watch check output %q, want the dial error", in.CheckOutput)
	}
	ln2, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go acceptAndClose(ln2)
	d = wait.Eventually(t, bound, "tcp-svc passing everywhere after its port reopened", everywhere("tcp-svc", "t1", true, client.StatusPassing, true))
	Figure(t, "check_tcp_reopen_to_passing_everywhere_seconds", d.Seconds())

	// HTTP.
	var code atomic.Int32
	code.Store(200)
	hln := listenBackend(t)
	hsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) })}
	go hsrv.Serve(hln)
	defer hsrv.Close()
	register("http-svc", "h1", heraldpb.Check_KIND_HTTP, "http://"+hln.Addr().String()+"/health", 0)
	wait.Eventually(t, 10*time.Second, "http-svc passing everywhere", everywhere("http-svc", "h1", true, client.StatusPassing, true))
	code.Store(503)
	wait.Eventually(t, bound, "http-svc critical everywhere on 503", everywhere("http-svc", "h1", false, client.StatusCritical, true))
	code.Store(429)
	wait.Eventually(t, bound, "http-svc a warning everywhere on 429, still served", everywhere("http-svc", "h1", true, client.StatusWarning, true))

	// gRPC.
	gln := listenBackend(t)
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gln)
	defer gs.Stop()
	hs.SetServingStatus("echo.v1.Echo", healthpb.HealthCheckResponse_SERVING)
	register("grpc-svc", "g1", heraldpb.Check_KIND_GRPC, gln.Addr().String()+"/echo.v1.Echo", 0)
	wait.Eventually(t, 10*time.Second, "grpc-svc passing everywhere", everywhere("grpc-svc", "g1", true, client.StatusPassing, true))
	hs.SetServingStatus("echo.v1.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
	wait.Eventually(t, bound, "grpc-svc critical everywhere on NOT_SERVING", everywhere("grpc-svc", "g1", false, client.StatusCritical, true))

	// Deregister-after.
	dead := listenBackend(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	register("gone-svc", "x1", heraldpb.Check_KIND_TCP, deadAddr, 2*time.Second)
	d = wait.Eventually(t, bound+2*time.Second+time.Second, "gone-svc removed everywhere after deregister-after", everywhere("gone-svc", "x1", false, 0, false))
	Figure(t, "check_deregister_after_2s_removed_seconds", d.Seconds())

	// The owner fails: the cluster reaps its checked instances.
	c.Kill(0)
	wait.Eventually(t, 20*time.Second, "node 0's checked instances reaped", everywhere("tcp-svc", "t1", false, 0, false))
}

// listenBackend listens on 127.0.0.1 on a port below the ephemeral range.
func listenBackend(t *testing.T) net.Listener {
	t.Helper()
	for range 200 {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+rand.IntN(12000))).String())
		if err == nil {
			return ln
		}
	}
	t.Fatal("no free port for a backend")
	return nil
}

// acceptAndClose accepts connections and closes them until ln closes: a
// TCP check only needs the connect.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
