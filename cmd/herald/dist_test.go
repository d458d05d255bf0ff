package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// requireTool returns the path of a tool a test needs; without it the test
// skips, unless CI=true, where it fails.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required when CI=true: apt-get install %s", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s); skipping", name, pkg)
	}
	return p
}

// TestSystemdUnit checks cmd/herald/dist/herald.service with
// systemd-analyze verify (no error and no warning, such as a misspelt key)
// against the real binary, that it keeps its sandbox, and that
// systemd-analyze security rates its exposure below 2 of 10.
func TestSystemdUnit(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("dist/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=herald", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/local/bin/herald agent -data-dir /var/lib/herald "} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("herald.service lacks %q", want)
		}
	}
	// verify wants ExecStart's binary to exist: point it at the one built.
	file := filepath.Join(t.TempDir(), "herald.service")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/herald", buildHerald(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", file).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline unsupported here (%v); exposure not rated", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for herald.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level >= 2 {
		t.Fatalf("exposure level %.1f; want under 2\n%s", level, out)
	}
	t.Logf("systemd-analyze security: exposure %s of 10", m[1])
}

// TestMakeInstall: `make install` puts herald in GOBIN, stamped with the
// version git describe gives.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mk := requireTool(t, "make", "make")
	git := requireTool(t, "git", "git")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := exec.Command(git, "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	gobin := t.TempDir()
	cmd := exec.Command(mk, "-C", root, "install")
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "herald"), "version", "-json").Output()
	if err != nil {
		t.Fatalf("installed herald version -json: %v", err)
	}
	var v struct{ Version string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version != strings.TrimSpace(string(desc)) {
		t.Fatalf("installed herald says %s (%v); want version %q", out, err, strings.TrimSpace(string(desc)))
	}
}
