package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/herald-sd/herald/pushsvc/heraldpb"
	"github.com/herald-sd/herald/testenv/wait"
)

// readyzBody returns /readyz's status code and body (0 when it does not
// answer).
func (a *agentProc) readyzBody() (int, string) {
	resp, err := http.Get("http://" + a.http + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// run runs a CLI command against the agent and returns its output and exit
// code.
func (a *agentProc) run(args ...string) (string, int) {
	cmd := exec.Command(buildHerald(a.t), args...)
	cmd.Env = append(os.Environ(), "HERALD_ADDR="+a.grpc)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		a.t.Fatalf("herald %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// memberLine returns the `herald members` line of node, or "".
func (a *agentProc) memberLine(node string) string {
	out, err := a.cli("members")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == node {
			return l
		}
	}
	return ""
}

func TestRetryJoinEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	seed := newAgent(t, "-node", "seed") // not started: nothing listens on its Serf address yet
	b := newAgent(t, "-node", "b", "-retry-join", seed.serf)
	b.launch()
	wait.Eventually(t, 15*time.Second, "b's /readyz: 503, cluster: not joined", func() bool {
		code, body := b.readyzBody()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "cluster: not joined")
	})
	seed.start()
	wait.Eventually(t, 30*time.Second, "b's /readyz: 200 after the retry-join", func() bool { return b.readyz() == http.StatusOK })
	for _, a := range []*agentProc{seed, b} {
		for _, node := range []string{"seed", "b"} {
			wait.Eventually(t, 10*time.Second, node+" alive", func() bool { return strings.Contains(a.memberLine(node), " alive") })
		}
	}
	log := b.logText()
	if !strings.Contains(log, "level=WARN msg=\"retry-join failed; retrying\"") || !strings.Contains(log, "level=INFO msg=\"retry-join succeeded\"") {
		t.Errorf("b's log lacks the retry-join warning or success:\n%s", log)
	}
}

func TestJoinAndForceLeaveEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	// Failed nodes keep their instances for an hour: only force-leave can
	// remove them within the test's deadline.
	a1 := startAgent(t, "-node", "a1", "-reap-failed", "1h")
	a2 := startAgent(t, "-node", "a2", "-reap-failed", "1h", "-join", a1.serf)
	a3 := startAgent(t, "-node", "a3", "-reap-failed", "1h") // alone until `herald join`
	if out := a3.mustCLI("join", a1.serf); !strings.Contains(out, "joined: reached 1 of 1") {
		t.Fatalf("herald join: %q", out)
	}
	for _, node := range []string{"a1", "a2", "a3"} {
		wait.Eventually(t, 10*time.Second, node+" alive on a1", func() bool { return strings.Contains(a1.memberLine(node), " alive") })
	}
	a2.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000")
	for _, a := range []*agentProc{a1, a3} {
		wait.Eventually(t, 10*time.Second, "api-1 replicated", func() bool { return strings.Contains(a.instancesOut("api"), "api-1") })
	}

	refused := []struct {
		args  []string
		code  int
		words []string
	}{
		{[]string{"force-leave", "a2"}, 1, []string{"failed precondition", `"a2" is alive`, "only removes failed members"}},
		{[]string{"force-leave", "a1"}, 1, []string{"failed precondition", `"a1" is this node`}},
		{[]string{"force-leave", "ghost"}, 1, []string{"not found", `no member is named "ghost"`}},
		{[]string{"force-leave"}, 2, []string{"exactly one node name"}},
		{[]string{"join"}, 2, []string{"at least one Serf address"}},
		{[]string{"join", "10.0.0.1"}, 1, []string{"invalid addresses", "not host:port"}},
		{[]string{"join", "127.0.0.1:1"}, 1, []string{"failed precondition", "none of [127.0.0.1:1] answered", "-encrypt"}},
	}
	for _, r := range refused {
		out, code := a1.run(r.args...)
		for _, w := range r.words {
			if code != r.code || !strings.Contains(out, w) {
				t.Errorf("herald %s: exit %d (want %d), output %q (want it to mention %q)", strings.Join(r.args, " "), code, r.code, out, w)
			}
		}
	}

	a2.kill()
	failed := regexp.MustCompile(`^a2\s+\S+\s+failed \(\d+s\)`)
	wait.Eventually(t, 15*time.Second, "a1 lists a2 as failed (Ns)", func() bool { return failed.MatchString(a1.memberLine("a2")) })
	if out := a1.instancesOut("api"); !strings.Contains(out, "api-1") {
		t.Fatalf("api-1 reaped before the force-leave (-reap-failed 1h):\n%s", out)
	}
	t.Logf("herald members on a1:\n%s", a1.mustCLI("members"))
	began := time.Now()
	a1.mustCLI("force-leave", "a2")
	for _, a := range []*agentProc{a1, a3} {
		wait.Eventually(t, 2*time.Second, "api-1 gone at once", func() bool { return !strings.Contains(a.instancesOut("api"), "api-1") })
	}
	t.Logf("api-1 gone on a1 and a3 %s after the force-leave", time.Since(began).Round(time.Millisecond))
	if l := a1.memberLine("a2"); !regexp.MustCompile(`left \(\d+s\)`).MatchString(l) {
		t.Errorf("a2 after force-leave: %q, want left (Ns)", l)
	}
	if out := a1.mustCLI("force-leave", "-prune", "a2"); !strings.Contains(out, "pruned a2") {
		t.Errorf("force-leave -prune: %q", out)
	}
	wait.Eventually(t, 10*time.Second, "a2 pruned from members", func() bool { return a1.memberLine("a2") == "" })
}

// TestDataDirRejoinsAfterRestart: a node with -data-dir that left on
// SIGTERM comes back without -join and finds its cluster; its peers never
// reconnect to a member that left, so only the Serf snapshot can do it.
func TestDataDirRejoinsAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a1 := startAgent(t, "-node", "a1")
	a2 := startAgent(t, "-node", "a2", "-data-dir", t.TempDir(), "-drain-grace", "0s", "-join", a1.serf)
	a2.mustCLI("register", "-service", "db", "-id", "db-1", "-address", "10.0.2.1", "-port", "5432")
	wait.Eventually(t, 10*time.Second, "db-1 on a1", func() bool { return strings.Contains(a1.instancesOut("db"), "db-1") })

	a2.cmd.Process.Signal(syscall.SIGTERM)
	<-a2.done
	wait.Eventually(t, 10*time.Second, "a1 lists a2 as left", func() bool { return strings.Contains(a1.memberLine("a2"), " left (") })
	if out := a1.instancesOut("db"); strings.Contains(out, "db-1") {
		t.Fatalf("db-1 still on a1 after a2 left:\n%s", out)
	}
	join := slices.Index(a2.args, "-join")
	a2.args = slices.Delete(a2.args, join, join+2)
	a2.start()
	wait.Eventually(t, 15*time.Second, "a1 lists a2 alive again", func() bool { return strings.Contains(a1.memberLine("a2"), " alive") })
	wait.Eventually(t, 10*time.Second, "db-1 back on a1", func() bool { return strings.Contains(a1.instancesOut("db"), "db-1") })
}

func TestMemberStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		status string
		ago    time.Duration // 0: no status_since
		want   string
	}{
		{"alive", time.Minute, "alive"},
		{"leaving", time.Second, "leaving"},
		{"failed", 12*time.Second + 400*time.Millisecond, "failed (12s)"},
		{"failed", 0, "failed"},
		{"left", 3*time.Minute + 7*time.Second, "left (3m7s)"},
		{"failed", 2*time.Hour + 5*time.Minute + 9*time.Second, "failed (2h5m)"},
	}
	for _, tt := range tests {
		m := &pb.Member{Name: "n", Status: tt.status}
		if tt.ago > 0 {
			m.StatusSince = timestamppb.New(now.Add(-tt.ago))
		}
		if got := memberStatus(m, now); got != tt.want {
			t.Errorf("memberStatus(%s, %s ago) = %q, want %q", tt.status, tt.ago, got, tt.want)
		}
	}
}
