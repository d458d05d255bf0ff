package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCLIBehavesEndToEnd drives the real binary through what an operator
// types: an address list with a dead agent first, -json output, meta and
// check in instances, and the refusals (exit code and message) of bad
// command lines.
func TestCLIBehavesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	a := startAgent(t, "-dev")
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
	list := []string{"HERALD_ADDR=" + dead + "," + a.grpc}

	// Every kind of command fails over from the dead agent to the live one.
	for _, args := range [][]string{
		{"register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000", "-tag", "v1", "-meta", "zone=a", "-check", "ttl=1h"},
		{"register", "-service", "api", "-id", "api-2", "-address", "10.0.0.6", "-port", "9001", "-weight", "0"},
		{"heartbeat", "-service", "api", "-id", "api-1"},
		{"drain", "-service", "api", "-id", "api-2"},
		{"undrain", "-service", "api", "-id", "api-2"},
		{"services"},
		{"instances", "api"},
		{"members"},
	} {
		if code, _, errOut := a.runEnv(list, args...); code != 0 {
			t.Fatalf("HERALD_ADDR=%s,%s herald %s: exit %d: %s", dead, a.grpc, strings.Join(args, " "), code, errOut)
		}
	}
	if code, _, errOut := a.runEnv(nil, "services", "-addr", dead+","+a.grpc); code != 0 {
		t.Fatalf("-addr list: exit %d: %s", code, errOut)
	}
	code, _, errOut := a.runEnv(nil, "services", "-addr", dead+", "+dead)
	if code != 1 || !strings.Contains(errOut, "cannot reach any of the agents at "+dead) {
		t.Fatalf("all agents dead: exit %d, %q", code, errOut)
	}

	// -json on services, instances and members.
	var services []serviceJSON
	a.jsonCLI(&services, "services", "-json")
	if len(services) != 1 || services[0].Name != "api" || services[0].Instances != 2 || services[0].Serving != 1 {
		t.Fatalf("services -json = %+v", services)
	}
	var ins []instanceJSON
	a.jsonCLI(&ins, "instances", "-json", "api")
	if len(ins) != 2 {
		t.Fatalf("instances -json = %+v", ins)
	}
	byID := map[string]instanceJSON{ins[0].ID: ins[0], ins[1].ID: ins[1]}
	one, two := byID["api-1"], byID["api-2"]
	if one.Meta["zone"] != "a" || one.Check == nil || one.Check.Kind != "ttl" || one.Check.TTL != "1h0m0s" || one.Weight != 1 || one.Node != "e2e" {
		t.Fatalf("api-1 = %+v", one)
	}
	if two.Weight != 0 || two.Check != nil || two.Status != "passing" {
		t.Fatalf("api-2 = %+v (want weight 0, no check)", two)
	}
	var members []memberJSON
	a.jsonCLI(&members, "members", "-json")
	if len(members) != 1 || members[0].Name != "e2e" || members[0].Status != "alive" {
		t.Fatalf("members -json = %+v", members)
	}
	// The table shows meta and the check too.
	if out := a.mustCLI("instances", "api"); !strings.Contains(out, "zone=a") || !strings.Contains(out, "ttl=1h0m0s") {
		t.Fatalf("instances table:\n%s", out)
	}

	// Refusals: exit code, the message, and nothing repeated.
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"instances", "nosuch"}, 1, `no service "nosuch"`},
		{[]string{"instances", "-tag", "v9", "api"}, 0, "ID"}, // the service exists; no instance has the tag
		{[]string{"services", "extra"}, 2, `unexpected argument "extra": herald services takes no arguments`},
		{[]string{"members", "extra"}, 2, `unexpected argument "extra": herald members takes no arguments`},
		{[]string{"drain", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"deregister", "-service", "api", "-id", "x", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"instances", "api", "-tag", "v1"}, 2, `flag -tag comes after the argument "api": flags go before arguments`},
		{[]string{"watch", "api", "-json"}, 2, `flag -json comes after the argument "api": flags go before arguments`},
		{[]string{"force-leave", "n1", "-prune"}, 2, `flag -prune comes after the argument "n1": flags go before arguments`},
		{[]string{"join", "127.0.0.1:1", "-addr", a.grpc}, 2, `flag -addr comes after the argument "127.0.0.1:1": flags go before arguments`},
		{[]string{"drain", "-service", "api", "-id", "nosuch"}, 1, `herald drain: instance "nosuch" of service "api" not found` + "\n"},
		{[]string{"deregister", "-service", "api", "-id", "nosuch"}, 1, `herald deregister: instance "nosuch" of service "api" not found` + "\n"},
		{[]string{"register", "-service", "api", "-id", "x", "-address", "10.0.0.1", "-port", "80", "-weight", "-1"}, 2, `invalid value "-1" for flag -weight: want a whole number from 0 to 65535`},
		{[]string{"register", "-service", "api", "-id", "x", "-address", "10.0.0.1", "-port", "80", "-weight", "65536"}, 2, "want a whole number from 0 to 65535"},
		{[]string{"register", "-service", "api", "-id", "x", "-address", "10.0.0.1", "-port", "-1"}, 2, `invalid value "-1" for flag -port`},
		{[]string{"register", "-service", "api", "-id", "x", "-address", "10.0.0.1", "-port", "80", "-check", "ttl=-5s"}, 2, "the ttl must be more than 0"},
		{[]string{"services", "-timeout", "-1s"}, 2, "-timeout -1s: must be more than 0"},
		{[]string{"register", "-x"}, 2, "herald register: flag provided but not defined: -x (run 'herald register -h' for its flags)\n"},
		{[]string{"agent", "-dev", "extra"}, 2, `unexpected argument "extra": herald agent takes no arguments`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := a.runEnv(nil, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.msg) {
				t.Fatalf("exit %d (want %d), stdout %q stderr %q (want %q)", code, tt.code, out, errOut, tt.msg)
			}
			if tt.code == 2 && strings.Count(errOut, "\n") != 1 {
				t.Errorf("a command line mistake printed more than one line:\n%s", errOut)
			}
			for _, rep := range []string{"not found: ", "registry: ", "pushsvc: ", "client: "} {
				if strings.Contains(errOut, rep) {
					t.Fatalf("stderr %q carries the prefix %q", errOut, rep)
				}
			}
		})
	}
}

// TestCLIHelpAndVersion: register -h names its flags' arguments (no
// backquoted words garbled, no "(default -1)"), -status is documented, and
// -v and version -json answer.
func TestCLIHelpAndVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	bin := buildHerald(t)
	out, err := exec.Command(bin, "register", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("register -h: %v\n%s", err, out)
	}
	help := string(out)
	for _, want := range []string{"-weight N", "-check CHECK", "ttl=DURATION", "renewed with 'herald heartbeat'", "-status status", "passing, warning, critical or draining", "-meta key=value"} {
		if !strings.Contains(help, want) {
			t.Errorf("register -h lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "(default -1)") || strings.Contains(help, "-check herald") {
		t.Errorf("register -h is garbled:\n%s", help)
	}

	for _, flag := range []string{"-v", "-version", "version"} {
		out, err := exec.Command(bin, flag).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "herald ") {
			t.Fatalf("herald %s = %q, %v", flag, out, err)
		}
	}
	out, err = exec.Command(bin, "version", "-json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Go string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version -json = %s (%v)", out, err)
	}
}

// TestBashCompletion loads `herald completion bash` into a real bash and
// asks it to complete commands, flags (read from the command's -h), fixed
// values and service names (from the agent).
func TestBashCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	a := startAgent(t, "-dev")
	a.mustCLI("register", "-service", "payments", "-id", "p-1", "-address", "10.0.0.5", "-port", "9000")
	bin := buildHerald(t)
	script, err := exec.Command(bin, "completion", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "herald.bash")
	if err := os.WriteFile(file, script, 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		// COMP_WORDS as bash fills it; the last word is the one completed.
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := "source " + file + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _herald; printf '%s\\n' \"${COMPREPLY[@]}\""
		cmd := exec.Command(bash, "--norc", "-c", prog)
		cmd.Env = append(os.Environ(), "HERALD_ADDR="+a.grpc)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return string(out)
	}
	if got := complete(bin, "ins"); got != "instances\n" {
		t.Errorf("herald ins<TAB> = %q", got)
	}
	if got := complete(bin, "register", "-wei"); got != "-weight\n" {
		t.Errorf("herald register -wei<TAB> = %q", got)
	}
	if got := complete(bin, "register", "-status", "dr"); got != "draining\n" {
		t.Errorf("herald register -status dr<TAB> = %q", got)
	}
	if got := complete(bin, "instances", "pay"); got != "payments\n" {
		t.Errorf("herald instances pay<TAB> = %q", got)
	}
	if got := complete(bin, "agent", "-data-"); got != "-data-dir\n" {
		t.Errorf("herald agent -data-<TAB> = %q", got)
	}
}

// jsonCLI runs a CLI command and decodes its stdout into v.
func (a *agentProc) jsonCLI(v any, args ...string) {
	a.t.Helper()
	out := a.mustCLI(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// instancesOut returns `herald instances service`'s table, empty when the
// agent has no such service (which exits 1).
func (a *agentProc) instancesOut(service string) string {
	a.t.Helper()
	out, err := a.cli("instances", service)
	if err != nil && !strings.Contains(err.Error(), "no service") {
		a.t.Fatalf("herald instances %s: %v", service, err)
	}
	return out
}
