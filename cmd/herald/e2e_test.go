package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// The end-to-end tests build the real binary and drive it the way a user
// does: `herald agent` on free loopback ports, the CLI, and `dig`.

var (
	buildOnce sync.Once
	heraldBin string
	buildErr  error
)

func buildHerald(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		heraldBin = filepath.Join(dir, "herald")
		out, err := exec.Command("go", "build", "-o", heraldBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return heraldBin
}

// freePort returns a loopback port free for both TCP and UDP.
var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

func freePort(t *testing.T) int {
	t.Helper()
	// Ports below the kernel's ephemeral range (ip_local_port_range,
	// 32768-60999 by default): an agent that starts a while after its port
	// was picked (restarts, refused starts) must not find it taken by some
	// process's outgoing connection, which draws from that range.
	// Each port is handed out once per test binary, so that the four
	// ports of one agent, or of two agents, never coincide.
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
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			portsUsed[port] = true
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type agentProc struct {
	t                     *testing.T
	cmd                   *exec.Cmd
	log                   *bytes.Buffer
	dns, grpc, http, serf string
	args                  []string
	done                  chan struct{}
	mu                    sync.Mutex
}

func startAgent(t *testing.T, extra ...string) *agentProc {
	t.Helper()
	a := newAgent(t, extra...)
	a.start()
	return a
}

// newAgent prepares an agent on free loopback ports without starting it.
func newAgent(t *testing.T, extra ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t,
		dns:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		grpc: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		serf: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	a.args = append([]string{"agent", "-node", "e2e", "-dns-addr", a.dns, "-grpc-addr", a.grpc, "-http-addr", a.http, "-bind", a.serf, "-dns-ttl", "0s"}, extra...)
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", a.logText())
		}
	})
	return a
}

// start launches the agent and waits until /readyz answers 200.
func (a *agentProc) start() {
	a.t.Helper()
	a.launch()
	wait.Eventually(a.t, 15*time.Second, "agent /readyz", func() bool { return a.readyz() == 200 })
}

// readyz returns /readyz's status code, or 0 when it does not answer.
func (a *agentProc) readyz() int {
	resp, err := http.Get("http://" + a.http + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// launch starts the agent process without waiting for it.
func (a *agentProc) launch() {
	a.t.Helper()
	a.log = &bytes.Buffer{}
	a.cmd = exec.Command(buildHerald(a.t), a.args...)
	a.cmd.Stdout = syncWriter{&a.mu, a.log}
	a.cmd.Stderr = syncWriter{&a.mu, a.log}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.done) }()
}

func (a *agentProc) logText() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

func (a *agentProc) kill() {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Kill()
		<-a.done
	}
}

type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// cli runs a CLI command against the agent and returns its stdout.
func (a *agentProc) cli(args ...string) (string, error) {
	cmd := exec.Command(buildHerald(a.t), args...)
	cmd.Env = append(os.Environ(), "HERALD_ADDR="+a.grpc)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

func (a *agentProc) mustCLI(args ...string) string {
	a.t.Helper()
	out, err := a.cli(args...)
	if err != nil {
		a.t.Fatalf("herald %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func requireDig(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig is required when CI=true: apt-get install dnsutils")
		}
		t.Skip("dig not installed (apt-get install dnsutils); skipping")
	}
	return p
}

// dig returns the sorted +short answer lines.
func (a *agentProc) dig(qname, qtype string) []string {
	a.t.Helper()
	host, port, _ := net.SplitHostPort(a.dns)
	out, err := exec.Command(requireDig(a.t), "@"+host, "-p", port, "+short", "+tries=1", "+time=2", qname, qtype).CombinedOutput()
	if err != nil {
		a.t.Fatalf("dig %s %s: %v\n%s", qname, qtype, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

func TestCLIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	requireDig(t)
	a := startAgent(t, "-dev")
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000", "-tag", "v1")
	a.mustCLI("register", "-service", "api", "-id", "api-2", "-address", "10.0.0.6", "-port", "9001", "-weight", "5")

	if got := a.dig("api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.5 10.0.0.6" {
		t.Fatalf("A = %v", got)
	}
	srv := a.dig("api.service.herald", "SRV")
	if len(srv) != 2 || !strings.Contains(strings.Join(srv, "\n"), " 9000 ") || !strings.Contains(strings.Join(srv, "\n"), " 5 9001 ") {
		t.Fatalf("SRV = %v", srv)
	}
	if got := a.dig("v1.api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.5" {
		t.Fatalf("tag filter A = %v", got)
	}

	a.mustCLI("drain", "-service", "api", "-id", "api-1")
	if got := a.dig("api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.6" {
		t.Fatalf("after drain A = %v", got)
	}
	if out := a.mustCLI("instances", "api"); !strings.Contains(out, "draining") {
		t.Fatalf("instances after drain:\n%s", out)
	}
	a.mustCLI("undrain", "-service", "api", "-id", "api-1")
	a.mustCLI("deregister", "-service", "api", "-id", "api-2")
	if got := a.dig("api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.5" {
		t.Fatalf("after deregister A = %v", got)
	}
	if out := a.mustCLI("services"); !strings.Contains(out, "api") {
		t.Fatalf("services:\n%s", out)
	}
	if out := a.mustCLI("members"); !strings.Contains(out, "e2e") || !strings.Contains(out, "alive") {
		t.Fatalf("members:\n%s", out)
	}

	// A session registration lives as long as its client process.
	sess := exec.Command(buildHerald(t), "register", "-addr", a.grpc, "-service", "web", "-id", "web-1", "-address", "10.0.1.1", "-port", "80", "-check", "session")
	sessOut := &bytes.Buffer{}
	sess.Stdout = sessOut
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	wait.Eventually(t, 5*time.Second, "session registration in DNS", func() bool {
		return strings.Join(a.dig("web.service.herald", "A"), " ") == "10.0.1.1"
	})
	sess.Process.Signal(syscall.SIGKILL)
	sess.Wait()
	killed := time.Now()
	wait.Eventually(t, 3*time.Second, "session instance removed after its client died", func() bool {
		out, _ := exec.Command(requireDig(t), "@127.0.0.1", "-p", strings.Split(a.dns, ":")[1], "web.service.herald", "A").CombinedOutput()
		return strings.Contains(string(out), "NXDOMAIN")
	})
	t.Logf("session instance removed %s after kill -9 of its client", time.Since(killed).Round(time.Millisecond))
}

func TestCLIErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev")
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"register", "-service", "api", "-id", "x", "-address", "not-an-ip", "-port", "80"}, 1, "address"},
		{[]string{"register", "-service", "bad_name", "-id", "x", "-address", "10.0.0.1", "-port", "80"}, 1, "service"},
		{[]string{"register", "-service", "api", "-id", "x", "-address", "10.0.0.1", "-port", "70000"}, 2, "port"},
		{[]string{"deregister", "-service", "api", "-id", "missing"}, 1, "missing"},
		{[]string{"instances"}, 2, "service name"},
		{[]string{"nosuchcommand"}, 2, "unknown command"},
		{[]string{"services", "-addr", "127.0.0.1:1"}, 1, "cannot reach the agent"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(buildHerald(t), tt.args...)
			cmd.Env = append(os.Environ(), "HERALD_ADDR="+a.grpc)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tt.code || !strings.Contains(string(out), tt.msg) {
				t.Fatalf("exit %d (want %d), output %q (want it to mention %q)", code, tt.code, out, tt.msg)
			}
		})
	}
}

func TestDataDirSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	a := startAgent(t, "-data-dir", dir)
	a.mustCLI("register", "-service", "db", "-id", "db-1", "-address", "10.0.2.1", "-port", "5432", "-meta", "zone=a")
	a.mustCLI("register", "-service", "db", "-id", "db-2", "-address", "fd00::2", "-port", "5432")
	a.mustCLI("drain", "-service", "db", "-id", "db-2")
	a.mustCLI("register", "-service", "db", "-id", "db-ttl", "-address", "10.0.2.3", "-port", "5432", "-check", "ttl=30s")
	a.mustCLI("register", "-service", "db", "-id", "db-gone", "-address", "10.0.2.4", "-port", "5432")
	a.mustCLI("deregister", "-service", "db", "-id", "db-gone")
	a.kill() // SIGKILL: no chance to flush anything
	a.start()
	out := a.mustCLI("instances", "db")
	for _, want := range []string{"db-1", "db-2", "draining"} {
		if !strings.Contains(out, want) {
			t.Fatalf("after kill -9 and restart, instances lack %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"db-ttl", "db-gone"} {
		if strings.Contains(out, gone) {
			t.Fatalf("after restart, %s is back:\n%s", gone, out)
		}
	}
}

func TestDamagedDataDirRefusesThenRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	a := startAgent(t, "-data-dir", dir)
	a.mustCLI("register", "-service", "db", "-id", "db-1", "-address", "10.0.2.1", "-port", "5432")
	a.kill()
	path := filepath.Join(dir, "registrations.db")
	if err := os.Truncate(path, 100); err != nil { // a torn file
		t.Fatal(err)
	}

	for _, tt := range []struct {
		args []string
		msg  []string
	}{
		{a.args, []string{"herald agent: store: " + path + " is damaged (cut off at 100 bytes", "start with -recover-store"}},
		{[]string{"agent", "-dev", "-recover-store"}, []string{"-recover-store needs -data-dir"}},
	} {
		cmd := exec.Command(buildHerald(t), tt.args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("herald %s did not exit; output:\n%s", strings.Join(tt.args, " "), out.String())
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("herald %s: %v, want exit code 1; output:\n%s", strings.Join(tt.args, " "), err, out.String())
		}
		for _, want := range tt.msg {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output does not say %q:\n%s", want, out.String())
			}
		}
	}

	a.args = append(a.args, "-recover-store")
	a.start()
	if !strings.Contains(a.logText(), "recovered a damaged store file") {
		t.Errorf("the recovery is not in the log:\n%s", a.logText())
	}
	if aside, _ := filepath.Glob(path + ".damaged-*"); len(aside) != 1 {
		t.Errorf("damaged copies %v, want one", aside)
	}
	a.mustCLI("register", "-service", "db", "-id", "db-2", "-address", "10.0.2.2", "-port", "5432")
}
