package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// The commands that hold a stream open (`herald watch`, `herald register
// -check session`), driven as a user does: a long-running process whose
// output lines the test reads as they come.

// streamProc is a running CLI command.
type streamProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	code   int // exit code, once done is closed
}

// startCLI starts a CLI command against the agent.
func (a *agentProc) startCLI(args ...string) *streamProc {
	a.t.Helper()
	p := &streamProc{t: a.t, lines: make(chan string, 1000), done: make(chan struct{})}
	p.cmd = exec.Command(buildHerald(a.t), args...)
	p.cmd.Env = append(os.Environ(), "HERALD_ADDR="+a.grpc)
	p.cmd.Stderr = syncWriter{&p.mu, &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	a.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if a.t.Failed() {
			a.t.Logf("herald %s stderr:\n%s", strings.Join(args, " "), p.errText())
		}
	})
	return p
}

func (p *streamProc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// next returns the next stdout line.
func (p *streamProc) next() string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("%s exited before printing another line; stderr:\n%s", p.cmd.Args, p.errText())
		}
		return l
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s printed no line within 10s; stderr:\n%s", p.cmd.Args, p.errText())
		return ""
	}
}

// exit waits for the command to end and returns its exit code and stderr.
func (p *streamProc) exit(d time.Duration) (int, string) {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code, p.errText()
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s; stderr:\n%s", p.cmd.Args, d, p.errText())
		return 0, ""
	}
}

var (
	// A text line: RFC 3339 UTC time, then the change.
	watchText = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z) (.* rev=(\d+))$`)
	jsonTime  = regexp.MustCompile(`^\{"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)",`)
	jsonRev   = regexp.MustCompile(`"revision":(\d+),`)
)

// TestWatchOutputEndToEnd pins `herald watch` and `herald watch -json`
// byte for byte (times and revisions aside, which must agree between the
// two forms): a snapshot, upserts, a drain, a remove, and a reset snapshot
// after the agent restarted and the watch resumed by itself.
func TestWatchOutputEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-data-dir", t.TempDir())
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000", "-tag", "v1", "-tag", "v2", "-meta", "zone=a")
	text := a.startCLI("watch", "api")
	js := a.startCLI("watch", "-json", "API")

	type change struct{ text, json string }
	steps := []struct {
		name string
		do   func()
		want []change
	}{
		{"snapshot", func() {}, []change{{
			"snapshot api/api-1 10.0.0.5:9000 passing weight=1 tags=v1,v2 node=e2e",
			`"op":"snapshot","revision":R,"service":"api","id":"api-1","address":"10.0.0.5","port":9000,"status":"passing","weight":1,"tags":["v1","v2"],"meta":{"zone":"a"},"node":"e2e"}`,
		}}},
		{"register", func() {
			a.mustCLI("register", "-service", "api", "-id", "api-2", "-address", "fd00::2", "-port", "9001", "-weight", "0")
		}, []change{{
			"upsert   api/api-2 [fd00::2]:9001 passing weight=0 tags= node=e2e",
			`"op":"upsert","revision":R,"service":"api","id":"api-2","address":"fd00::2","port":9001,"status":"passing","weight":0,"tags":[],"node":"e2e"}`,
		}}},
		{"another service is not watched", func() {
			a.mustCLI("register", "-service", "web", "-id", "web-1", "-address", "10.0.1.1", "-port", "80")
			a.mustCLI("drain", "-service", "api", "-id", "api-1")
		}, []change{{
			"upsert   api/api-1 10.0.0.5:9000 draining weight=1 tags=v1,v2 node=e2e",
			`"op":"upsert","revision":R,"service":"api","id":"api-1","address":"10.0.0.5","port":9000,"status":"draining","weight":1,"tags":["v1","v2"],"meta":{"zone":"a"},"node":"e2e"}`,
		}}},
		{"deregister", func() { a.mustCLI("deregister", "-service", "api", "-id", "api-2") }, []change{{
			"remove   api/api-2 [fd00::2]:9001 passing weight=0 tags= node=e2e",
			`"op":"remove","revision":R,"service":"api","id":"api-2","address":"fd00::2","port":9001,"status":"passing","weight":0,"tags":[],"node":"e2e"}`,
		}}},
		{"agent restart: reset snapshot", func() { a.kill(); a.start() }, []change{{
			"snapshot api/api-1 10.0.0.5:9000 draining weight=1 tags=v1,v2 node=e2e",
			`"op":"snapshot","revision":R,"reset":true,"service":"api","id":"api-1","address":"10.0.0.5","port":9000,"status":"draining","weight":1,"tags":["v1","v2"],"meta":{"zone":"a"},"node":"e2e"}`,
		}}},
		{"after the resume", func() { a.mustCLI("undrain", "-service", "api", "-id", "api-1") }, []change{{
			"upsert   api/api-1 10.0.0.5:9000 passing weight=1 tags=v1,v2 node=e2e",
			`"op":"upsert","revision":R,"service":"api","id":"api-1","address":"10.0.0.5","port":9000,"status":"passing","weight":1,"tags":["v1","v2"],"meta":{"zone":"a"},"node":"e2e"}`,
		}}},
	}
	var lastRev uint64
	for _, st := range steps {
		st.do()
		for _, want := range st.want {
			tl, jl := text.next(), js.next()
			m := watchText.FindStringSubmatch(tl)
			if m == nil {
				t.Fatalf("%s: text line %q does not look like `TIME op svc/id addr status ... rev=N`", st.name, tl)
			}
			rev, _ := strconv.ParseUint(m[4], 10, 64)
			if got := strings.TrimSuffix(m[3], " rev="+m[4]); got != want.text {
				t.Errorf("%s: text line\n got %q\nwant %q", st.name, got, want.text)
			}
			jm := jsonTime.FindStringSubmatch(jl)
			if jm == nil {
				t.Fatalf("%s: JSON line %q does not start with an RFC 3339 UTC time", st.name, jl)
			}
			if r := jsonRev.FindStringSubmatch(jl); r == nil || r[1] != m[4] {
				t.Errorf("%s: JSON line %q: revision differs from the text line's %d", st.name, jl, rev)
			}
			if got := jsonRev.ReplaceAllString(strings.TrimPrefix(jl, jm[0]), `"revision":R,`); got != want.json {
				t.Errorf("%s: JSON line\n got %s\nwant %s", st.name, got, want.json)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(jl), &v); err != nil {
				t.Errorf("%s: JSON line %q: %v", st.name, jl, err)
			}
			if st.name != "agent restart: reset snapshot" && rev <= lastRev {
				t.Errorf("%s: revision %d after %d", st.name, rev, lastRev)
			}
			lastRev = rev
		}
	}
	for _, p := range []*streamProc{text, js} {
		if !regexp.MustCompile(`herald watch: stream to 127\.0\.0\.1:\d+ broke \(.*\); resuming from revision \d+\n`).MatchString(p.errText()) {
			t.Errorf("%s: stderr does not say the stream broke and resumes:\n%s", p.cmd.Args, p.errText())
		}
		p.cmd.Process.Signal(syscall.SIGINT)
		if code, _ := p.exit(5 * time.Second); code != 0 {
			t.Errorf("%s: exit code %d after SIGINT, want 0", p.cmd.Args, code)
		}
		select {
		case l, ok := <-p.lines:
			if ok {
				t.Errorf("%s: unexpected line %q", p.cmd.Args, l)
			}
		default:
		}
	}
}

// TestWatchRefusedEndToEnd: a watch that cannot start says why at once.
func TestWatchRefusedEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "-addr", "127.0.0.1:1", "api"}, "herald watch: cannot reach the agent at 127.0.0.1:1: "},
		{[]string{"watch", "Bad_Name"}, `herald watch: invalid services: "Bad_Name" must be a DNS label: letters, digits and inner hyphens` + "\n"},
	} {
		p := a.startCLI(tt.args...)
		code, stderr := p.exit(5 * time.Second)
		if code != 1 || !strings.HasPrefix(stderr, tt.want) {
			t.Errorf("herald %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

// TestSessionEndToEnd: `herald register -check session` holds the instance
// while it runs, and exits 0 on an interrupt (the instance goes), 1 when the
// agent goes away, and 1 when a newer write through another node took the
// key.
func TestSessionEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a1 := startAgent(t, "-node", "a1")
	a2 := startAgent(t, "-node", "a2", "-join", a1.serf)
	session := func(a *agentProc, node, id string, extra ...string) *streamProc {
		t.Helper()
		args := append([]string{"register", "-service", "web", "-id", id, "-address", "10.0.1.1", "-port", "80", "-check", "session"}, extra...)
		p := a.startCLI(args...)
		want := "registered web/" + id + " on node " + node + " for this session; interrupt to deregister"
		if l := p.next(); l != want {
			t.Fatalf("herald %s printed %q, want %q", strings.Join(args, " "), l, want)
		}
		return p
	}
	instances := func(a *agentProc) string { return a.instancesOut("web") }

	t.Run("interrupt", func(t *testing.T) {
		p := session(a1, "a1", "web-1", "-weight", "0", "-status", "warning", "-tag", "v1", "-meta", "k=v")
		out := instances(a1)
		if !regexp.MustCompile(`web-1\s+10\.0\.1\.1\s+80\s+warning\s+0\s+v1\s+k=v\s+session\s+a1`).MatchString(out) {
			t.Fatalf("instances while the session runs:\n%s", out)
		}
		p.cmd.Process.Signal(syscall.SIGINT)
		if code, stderr := p.exit(5 * time.Second); code != 0 || stderr != "" {
			t.Fatalf("after SIGINT: exit %d, stderr %q; want 0 and nothing", code, stderr)
		}
		wait.Eventually(t, 5*time.Second, "web-1 removed", func() bool { return !strings.Contains(instances(a1), "web-1") })
	})

	t.Run("a newer write through another node", func(t *testing.T) {
		p := session(a1, "a1", "web-2")
		wait.Eventually(t, 10*time.Second, "web-2 on a2", func() bool { return strings.Contains(instances(a2), "web-2") })
		a2.mustCLI("register", "-service", "web", "-id", "web-2", "-address", "10.0.1.2", "-port", "80")
		code, stderr := p.exit(10 * time.Second)
		want := "herald register: instance web/web-2 was replaced by a newer write through another node; this session no longer holds it; exiting\n"
		if code != 1 || stderr != want {
			t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
		}
		if out := instances(a1); !regexp.MustCompile(`web-2\s+10\.0\.1\.2\s.*a2`).MatchString(out) {
			t.Fatalf("the newer write did not stay:\n%s", out)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"-address", "not-an-ip"}, `herald register: invalid address: "not-an-ip" is not an IPv4 or IPv6 address` + "\n"},
			{nil, "herald register: invalid address: is required: an IPv4 or IPv6 address\n"},
			{[]string{"-address", "10.0.0.1", "-service", ""}, "herald register: invalid service: must not be empty\n"},
			{[]string{"-address", "10.0.0.1", "-id", ""}, "herald register: invalid id: must not be empty\n"},
			{[]string{"-address", "10.0.0.1", "-service", "Bad_Name"}, `herald register: invalid service: "Bad_Name" must be a DNS label: letters, digits and inner hyphens (RFC 1123)` + "\n"},
			{[]string{"-address", "10.0.0.1", "-addr", "127.0.0.1:1"}, "herald register: cannot reach the agent at 127.0.0.1:1: "},
		} {
			args := append([]string{"register", "-port", "80", "-check", "session"}, tt.args...)
			if !slices.Contains(args, "-service") {
				args = append(args, "-service", "web")
			}
			if !slices.Contains(args, "-id") {
				args = append(args, "-id", "web-x")
			}
			p := a1.startCLI(args...)
			code, stderr := p.exit(5 * time.Second)
			if code != 1 || !strings.HasPrefix(stderr, tt.want) {
				t.Errorf("herald %s: exit %d, stderr %q; want 1 and %q", strings.Join(args, " "), code, stderr, tt.want)
			}
		}
	})

	t.Run("the agent goes away", func(t *testing.T) {
		p := session(a2, "a2", "web-3")
		a2.kill()
		code, stderr := p.exit(20 * time.Second)
		want := "herald register: session to " + a2.grpc + " ended, so the agent removed the instance: "
		if code != 1 || !strings.HasPrefix(stderr, want) {
			t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
		}
	})
}
