package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestActiveChecksEndToEnd registers instances with -check tcp=, http= and
// grpc= against real backends on loopback, and follows them through DNS,
// `herald watch -json` and `herald instances -json`: a TCP port that closes
// is critical everywhere within interval + timeout + 1s and passing again
// once it reopens; HTTP 503 is critical and 429 a warning that DNS still
// serves; a gRPC health NOT_SERVING is critical; and deregister-after
// removes an instance left critical.
func TestActiveChecksEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	requireDig(t)
	a := startAgent(t, "-dev")

	// TCP.
	tcpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ln, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ln.Close() }()
	a.mustCLI("register", "-service", "web", "-id", "web-1", "-address", "10.0.0.1", "-port", "80", "-check", "tcp="+tcpAddr+",interval=1s,timeout=500ms")
	w := a.startCLI("watch", "-json", "web")
	if l := w.next(); !strings.Contains(l, `"status":"passing"`) {
		t.Fatalf("watch snapshot: %s", l)
	}
	wait.Eventually(t, 5*time.Second, "web-1 in DNS", func() bool { return strings.Join(a.dig("web.service.herald", "A"), " ") == "10.0.0.1" })
	ln.Close()
	closed := time.Now()
	deadline := time.Second + 500*time.Millisecond + time.Second
	wait.Eventually(t, deadline, "web-1 out of DNS after its port closed", func() bool { return len(a.dig("web.service.herald", "A")) == 0 })
	var line watchLine
	if err := json.Unmarshal([]byte(w.next()), &line); err != nil || line.Status != "critical" || !strings.Contains(line.CheckOutput, "refused") {
		t.Fatalf("watch after the port closed: %+v (%v)", line, err)
	}
	t.Logf("critical in DNS and watch %s after the port closed (bound %s)", time.Since(closed).Round(time.Millisecond), deadline)
	var ins []instanceJSON
	a.jsonCLI(&ins, "instances", "-json", "web")
	if len(ins) != 1 || ins[0].Check == nil || ins[0].Check.Kind != "tcp" || ins[0].Check.Target != tcpAddr || ins[0].Check.Interval != "1s" ||
		!strings.Contains(ins[0].Check.Output, "refused") {
		t.Fatalf("instances -json: %+v", ins)
	}
	ln, err = net.Listen("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, deadline, "web-1 back in DNS after its port reopened", func() bool { return len(a.dig("web.service.herald", "A")) == 1 })
	if err := json.Unmarshal([]byte(w.next()), &line); err != nil || line.Status != "passing" {
		t.Fatalf("watch after the port reopened: %+v (%v)", line, err)
	}

	// HTTP: 503 critical, 429 warning (still served).
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.WriteHeader(int(code.Load()))
		rw.Write([]byte("db down"))
	}))
	defer srv.Close()
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.2", "-port", "80", "-check", "http="+srv.URL+"/health,interval=1s,timeout=500ms")
	status := func(service string) (string, string) {
		var ins []instanceJSON
		a.jsonCLI(&ins, "instances", "-json", service)
		if len(ins) != 1 || ins[0].Check == nil {
			t.Fatalf("instances -json %s: %+v", service, ins)
		}
		return ins[0].Status, ins[0].Check.Output
	}
	code.Store(503)
	wait.Eventually(t, deadline, "api-1 critical on 503", func() bool {
		st, out := status("api")
		return st == "critical" && out == "HTTP 503 Service Unavailable" // the status line, never the body
	})
	if got := a.dig("api.service.herald", "A"); len(got) != 0 {
		t.Fatalf("critical api-1 in DNS: %v", got)
	}
	code.Store(429)
	wait.Eventually(t, deadline, "api-1 warning on 429", func() bool { st, _ := status("api"); return st == "warning" })
	if got := a.dig("api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.2" {
		t.Fatalf("warning api-1 not served by DNS: %v", got)
	}

	// gRPC health.
	gln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gln)
	defer gs.Stop()
	hs.SetServingStatus("echo.v1.Echo", healthpb.HealthCheckResponse_SERVING)
	a.mustCLI("register", "-service", "echo", "-id", "echo-1", "-address", "10.0.0.3", "-port", "80", "-check", "grpc="+gln.Addr().String()+"/echo.v1.Echo,interval=1s")
	wait.Eventually(t, deadline, "echo-1 passing", func() bool { st, out := status("echo"); return st == "passing" && out == "" })
	hs.SetServingStatus("echo.v1.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
	wait.Eventually(t, deadline, "echo-1 critical on NOT_SERVING", func() bool { st, out := status("echo"); return st == "critical" && out == "grpc health: NOT_SERVING" })

	// Deregister-after: critical from the first probe, removed 2s later.
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	a.mustCLI("register", "-service", "gone", "-id", "gone-1", "-address", "10.0.0.4", "-port", "80", "-check", "tcp="+dead+",interval=1s,timeout=500ms,deregister-after=2s")
	began := time.Now()
	wait.Eventually(t, 1500*time.Millisecond+2*time.Second+2*time.Second, "gone-1 deregistered", func() bool {
		return !strings.Contains(a.instancesOut("gone"), "ID")
	})
	t.Logf("deregistered %s after registration (deregister-after 2s)", time.Since(began).Round(time.Millisecond))

	if m := a.metrics(); metricValue(m, "herald_check_probes_total") <= 0 || metricValue(m, "herald_check_status_changes_total") < 6 {
		t.Errorf("check metrics: probes %v, status changes %v", metricValue(m, "herald_check_probes_total"), metricValue(m, "herald_check_status_changes_total"))
	}

	// Bad checks are refused with the field named.
	for _, tt := range []struct{ check, msg string }{
		{"tcp=nohost", `invalid check.target: "nohost": want host:port`},
		{"http=ftp://x/", "want an http:// or https:// URL"},
		{"tcp=h:1,interval=100ms", "invalid check.interval: 100ms must be between 1s and 24h0m0s"},
		{"tcp=h:1,interval=1s,timeout=2s", "invalid check.timeout: 2s must be more than 0 and at most the interval 1s"},
		{"tcp=h:1,failures-before-critical=101", "want a count from 1 to 100"},
	} {
		code, _, errOut := a.runEnv(nil, "register", "-service", "x", "-id", "x", "-address", "10.0.0.9", "-port", "1", "-check", tt.check)
		if code == 0 || !strings.Contains(errOut, tt.msg) {
			t.Errorf("-check %s: exit %d, %q; want %q", tt.check, code, errOut, tt.msg)
		}
	}
}
