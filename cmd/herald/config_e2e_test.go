package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestConfigFileEndToEnd boots an agent from a config file with services
// (one with a TCP check) that it serves; the command line wins over the
// file; a SIGHUP after an edit adds and removes services and changes the
// log level, and the log says what changed. herald validate checks files
// without starting, and an unknown key is refused with its name and file.
func TestConfigFileEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	requireDig(t)
	backend, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.json")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"node": "from-file", "log-level": "info", "check-concurrency": 8,
 "services": [
  {"service": "api", "id": "api-1", "address": "10.0.0.5", "port": 9000, "tags": ["v1"], "meta": {"zone": "a"}},
  {"service": "web", "id": "web-1", "address": "10.0.0.6", "port": 80, "check": "tcp=` + backend.Addr().String() + `,interval=1s"}]}`)
	if out, err := runCLI(t, "validate", path); err != nil || !strings.Contains(out, "valid: 1 file(s), 3 setting(s), 2 service(s)") {
		t.Fatalf("validate: %q, %v", out, err)
	}

	a := newAgent(t, "-config-file", path) // newAgent's -node e2e wins over the file's
	a.start()
	if got := a.dig("api.service.herald", "A"); strings.Join(got, " ") != "10.0.0.5" {
		t.Fatalf("api from the config file: %v", got)
	}
	var ins []instanceJSON
	a.jsonCLI(&ins, "instances", "-json", "web")
	if len(ins) != 1 || ins[0].Node != "e2e" || ins[0].Check == nil || ins[0].Check.Kind != "tcp" || ins[0].Status != "passing" {
		t.Fatalf("web from the config file: %+v", ins)
	}

	write(`{"node": "from-file", "log-level": "debug", "check-concurrency": 16,
 "services": [
  {"service": "web", "id": "web-1", "address": "10.0.0.6", "port": 80, "check": "tcp=` + backend.Addr().String() + `,interval=1s"},
  {"service": "db", "id": "db-1", "address": "10.0.0.7", "port": 5432}]}`)
	a.cmd.Process.Signal(syscall.SIGHUP)
	wait.Eventually(t, 10*time.Second, "db-1 added and api-1 removed by the reload", func() bool {
		return strings.Join(a.dig("db.service.herald", "A"), " ") == "10.0.0.7" && len(a.dig("api.service.herald", "A")) == 0
	})
	for _, want := range []string{`msg="config reload: log level changed" component=config from=INFO to=DEBUG`,
		`msg="config: service registered" node=e2e component=config instance=db/db-1`, `msg="config: service removed" node=e2e component=config instance=api/api-1`,
		`msg="config reload: this key changed but takes effect only at the next restart" component=config key=check-concurrency`} {
		wait.Eventually(t, 5*time.Second, "log: "+want, func() bool { return strings.Contains(a.logText(), want) })
	}
	if strings.Contains(a.logText(), "key=node") {
		t.Errorf("a key given on the command line was reported as changed:\n%s", a.logText())
	}

	// A reload that fails keeps everything.
	write(`{"services": [{"service": "db", "id": "db-1", "address": "nope", "port": 1}]}`)
	a.cmd.Process.Signal(syscall.SIGHUP)
	wait.Eventually(t, 5*time.Second, "the failed reload logged", func() bool {
		return strings.Contains(a.logText(), "config reload failed; the previous configuration stays in force")
	})
	if got := a.dig("db.service.herald", "A"); len(got) != 1 {
		t.Fatalf("db-1 after a failed reload: %v", got)
	}

	// Unknown keys: named with their file, by validate and by the agent.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"nodes": "x"}`), 0o600)
	badSvc := filepath.Join(dir, "badsvc.json")
	os.WriteFile(badSvc, []byte(`{"services": [{"service": "a", "id": "a", "address": "10.0.0.1", "port": 1, "prot": 2}]}`), 0o600)
	for _, tt := range []struct{ file, msg string }{
		{bad, `config ` + bad + `: unknown key "nodes"`},
		{badSvc, `config ` + badSvc + `: services[0]: unknown key "prot"`},
	} {
		if out, err := runCLI(t, "validate", tt.file); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("validate %s: %q, %v; want %q", tt.file, out, err, tt.msg)
		}
		b := newAgent(t, "-config-file", tt.file)
		b.launch()
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("agent with %s did not exit", tt.file)
		}
		if !strings.Contains(b.logText(), tt.msg) {
			t.Errorf("agent with %s: %s; want %q", tt.file, b.logText(), tt.msg)
		}
	}
}

// runCLI runs the CLI without an agent and returns stdout, and stderr in the error.
func runCLI(t *testing.T, args ...string) (string, error) {
	a := &agentProc{t: t}
	return a.cli(args...)
}
