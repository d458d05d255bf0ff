package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// aclFile is the policy of the ACL end-to-end tests; webRule is the
// api-deployer's rule on web, which the reload test changes.
func aclFile(webRule string) string {
	sum := sha256.Sum256([]byte("ops-secret"))
	return `{"anonymous": {"services": {"*": "read"}},
 "tokens": [
  {"name": "ops", "secret_sha256": "` + hex.EncodeToString(sum[:]) + `", "operator": true, "services": {"*": "write"}},
  {"name": "api-deployer", "secret": "s3cret-api", "services": {"api": "write", "web-*": "read"` + webRule + `}}]}`
}

// runEnv runs a CLI command with extra environment and returns its exit code,
// stdout and stderr.
func (a *agentProc) runEnv(env []string, args ...string) (int, string, string) {
	a.t.Helper()
	cmd := exec.Command(buildHerald(a.t), args...)
	cmd.Env = append(append(os.Environ(), "HERALD_ADDR="+a.grpc, "HERALD_TOKEN="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		a.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func (a *agentProc) metrics() string {
	resp, err := http.Get("http://" + a.http + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestACLEndToEnd drives an agent with -acl-file through the CLI: scoped
// writes, operator-only node-wide drain, unknown tokens, anonymous reads,
// the three token sources, a SIGHUP reload (good, then bad), the denial
// metrics, and DNS without any token.
func TestACLEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "acl.json")
	if err := os.WriteFile(path, []byte(aclFile("")), 0o600); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("s3cret-api\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "-dev", "-acl-file", path)
	ops := "HERALD_TOKEN=ops-secret"
	deployer := "HERALD_TOKEN=s3cret-api"
	reg := func(service, id string) []string {
		return []string{"register", "-service", service, "-id", id, "-address", "10.0.0.5", "-port", "9000"}
	}
	expect := func(env []string, args []string, wantCode int, wantErr string) string {
		t.Helper()
		code, out, stderr := a.runEnv(env, args...)
		if code != wantCode || !strings.Contains(stderr, wantErr) {
			t.Fatalf("herald %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), code, stderr, wantCode, wantErr)
		}
		for _, secret := range []string{"s3cret-api", "ops-secret"} {
			if strings.Contains(stderr, secret) {
				t.Fatalf("herald %s printed a secret: %q", strings.Join(args, " "), stderr)
			}
		}
		return out
	}

	// The operator, by -token, writes anything.
	expect(nil, append([]string{"register", "-token", "ops-secret"}, reg("web", "w1")[1:]...), 0, "")
	expect([]string{ops}, reg("api", "a1"), 0, "")
	// A token scoped to api cannot write web; the registry is unchanged.
	expect([]string{deployer}, reg("web", "w2"), 1, `herald register: permission denied: token "api-deployer" lacks write on service "web"`)
	expect([]string{deployer}, []string{"deregister", "-service", "web", "-id", "w1"}, 1, `lacks write on service "web"`)
	if out := expect(nil, []string{"instances", "web"}, 0, ""); !strings.Contains(out, "w1") || strings.Contains(out, "w2") {
		t.Fatalf("web after the refused writes:\n%s", out)
	}
	// -token-file, and its own service.
	expect(nil, append([]string{"register", "-token-file", tokFile}, reg("api", "a2")[1:]...), 0, "")
	// Node-wide drain needs operator; nothing is drained.
	expect([]string{deployer}, []string{"drain"}, 1, `token "api-deployer" lacks operator, which draining or undraining every instance of the node needs`)
	if out := expect(nil, []string{"instances", "api"}, 0, ""); strings.Contains(out, "draining") || strings.Count(out, "passing") != 2 {
		t.Fatalf("api after the refused drain:\n%s", out)
	}
	expect([]string{deployer}, []string{"drain", "-service", "api"}, 0, "")
	if out := expect([]string{ops}, []string{"undrain"}, 0, ""); !strings.Contains(out, "3 instance(s) now passing") {
		t.Fatalf("operator undrain: %q", out)
	}
	expect([]string{deployer}, []string{"force-leave", "n9"}, 1, "lacks operator")
	// Unknown token: Unauthenticated, whatever the command.
	expect([]string{"HERALD_TOKEN=nope"}, []string{"services"}, 1, "refused the token: unknown token")
	expect([]string{"HERALD_TOKEN=nope"}, []string{"watch", "api"}, 1, "refused the token: unknown token")
	// Anonymous reads, lists and watches, but does not write.
	expect(nil, reg("api", "a3"), 1, `anonymous (no token) lacks write on service "api"`)
	if out := expect(nil, []string{"services"}, 0, ""); !strings.Contains(out, "api") || !strings.Contains(out, "web") {
		t.Fatalf("anonymous services:\n%s", out)
	}
	w := a.startCLI("watch", "api")
	if l := w.next(); !strings.Contains(l, "api/a1") && !strings.Contains(l, "api/a2") {
		t.Fatalf("anonymous watch: %q", l)
	}
	// DNS needs no token.
	if requireDig(t) != "" {
		if got := a.dig("web.service.herald", "A"); strings.Join(got, " ") != "10.0.0.5" {
			t.Fatalf("dig web A = %v", got)
		}
	}

	// Reload: the deployer gets write on web.
	if err := os.WriteFile(path, []byte(aclFile(`, "web": "write"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	wait.Eventually(t, 10*time.Second, "the reloaded rule lets api-deployer write web", func() bool {
		code, _, _ := a.runEnv([]string{deployer}, reg("web", "w2")...)
		return code == 0
	})
	// A bad file keeps the previous ACL and the log says why.
	if err := os.WriteFile(path, []byte(`{"tokens": [], "tokenz": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	wait.Eventually(t, 10*time.Second, "the bad reload is logged", func() bool {
		return strings.Contains(a.logText(), `the previous ACL stays in force`) && strings.Contains(a.logText(), `unknown key \"tokenz\"`)
	})
	expect([]string{deployer}, []string{"deregister", "-service", "web", "-id", "w2"}, 0, "")

	m := a.metrics()
	for _, want := range []string{`herald_acl_denied_total{reason="permission"} 5`, `herald_acl_denied_total{reason="unknown_token"} 2`,
		`herald_acl_reloads_total{result="ok"} 1`, `herald_acl_reloads_total{result="error"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if log := a.logText(); strings.Contains(log, "s3cret-api") || strings.Contains(log, "ops-secret") {
		t.Errorf("the agent log holds a secret:\n%s", log)
	}
}

// TestACLFileRefusedAtStart: a missing or bad -acl-file stops the start
// with a message that names the file and the problem.
func TestACLFileRefusedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"tokens": [{"name": "x", "secret": "y", "services": {"api": "admin"}}]}`), 0o600)
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, bytes.Repeat([]byte(" "), 2<<20), 0o600)
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.json"), "missing.json: no such file"},
		{bad, bad + `: tokens[0] ("x").services["api"]: "admin" is not read, write or deny`},
		{big, big + " is larger than 1048576 bytes"},
	} {
		a := newAgent(t, "-dev", "-acl-file", tc.file)
		a.launch()
		select {
		case <-a.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("-acl-file %s: the agent did not exit", tc.file)
		}
		if a.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(a.logText(), tc.want) {
			t.Errorf("-acl-file %s: exit %d, output %q; want it to say %q", tc.file, a.cmd.ProcessState.ExitCode(), a.logText(), tc.want)
		}
	}
}

// TestCLIEscapesEndToEnd: ids and meta with terminal escapes, accepted by
// the API, are printed escaped by every command that shows them.
func TestCLIEscapesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev")
	id := "api-\u009b31mred" // the 8-bit CSI, which the id rule (no ASCII controls) lets through
	out := a.mustCLI("register", "-service", "api", "-id", id, "-address", "10.0.0.5", "-port", "9000", "-meta", "k=\x1b]0;pwned\x07")
	if !strings.Contains(out, `api/api-\u009b31mred`) {
		t.Fatalf("register printed %q", out)
	}
	w := a.startCLI("watch", "-json", "api")
	line := w.next()
	if !strings.Contains(line, `"id":"api-\u009b31mred"`) || !strings.Contains(line, `"k":"\u001b]0;pwned\u0007"`) {
		t.Fatalf("watch -json printed %q", line)
	}
	tw := a.startCLI("watch", "api")
	if l := tw.next(); !strings.Contains(l, `api/api-\u009b31mred`) {
		t.Fatalf("watch printed %q", l)
	}
	for _, args := range [][]string{{"instances", "api"}, {"deregister", "-service", "api", "-id", id}} {
		out := a.mustCLI(args...)
		if strings.ContainsAny(out, "\u009b\x1b\x07") || !strings.Contains(out, `api-\u009b31mred`) {
			t.Fatalf("herald %s printed %q", args[0], out)
		}
	}
	// A newline or a tab in a value (meta accepts any bytes) must not
	// forge a row or shift the columns of a table or a watch line.
	a.mustCLI("register", "-service", "web", "-id", "web-1", "-address", "10.0.0.6", "-port", "80",
		"-tag", "v1", "-meta", "k=x\nweb-0\t6.6.6.6\t666\tpassing\t1\t-\t-\t-\tn0")
	out = a.mustCLI("instances", "web")
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 2 || strings.Count(lines[1], "\t") != 0 || !strings.Contains(lines[1], `k=x\nweb-0\t6.6.6.6`) {
		t.Fatalf("instances printed %d lines: %q; want the header and one row, the newline and tabs escaped", len(lines), out)
	}
	ww := a.startCLI("watch", "web")
	if l := ww.next(); strings.Contains(l, "\t") || !strings.Contains(l, "web/web-1") {
		t.Fatalf("watch printed %q", l)
	}
	// An error that quotes the input is escaped too.
	code, _, stderr := a.runEnv(nil, "deregister", "-service", "api", "-id", "x\u202eevil")
	if code != 1 || strings.Contains(stderr, "\u202e") {
		t.Fatalf("deregister error: exit %d, %q", code, stderr)
	}
}
