package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the suite runs in CI (CI=true), where a missing tool
// or missing root is a failure instead of a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips the test with reason, or fails it in CI.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: this must run in CI)", reason)
	}
	t.Skip(reason)
}

// RequireTool returns the path of an external tool, skipping the test when it
// is missing (failing it with CI=true).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("testenv: %s not found in PATH; install it (Debian: see .ci/run)", name))
	}
	return p
}

// RequireRoot skips the test unless it runs as root (failing it with CI=true):
// network namespaces, veths and bridges need CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "testenv: netns mode needs root (network namespaces, veth pairs, a bridge); run as root")
	}
	RequireTool(t, "ip")
}

var figuresMu sync.Mutex

// Figure records a measured figure: t.Logf, a "FIGURE name=value" line on
// stdout, and a line appended to $HERALD_FIGURES_FILE when it is set.
func Figure(t testing.TB, name string, value any) {
	t.Helper()
	if d, ok := value.(time.Duration); ok {
		value = d.Round(10 * time.Microsecond)
	}
	t.Logf("FIGURE %s=%v", name, value)
	line := fmt.Sprintf("FIGURE %s=%v\n", name, value)
	figuresMu.Lock()
	defer figuresMu.Unlock()
	fmt.Print(line)
	if p := os.Getenv("HERALD_FIGURES_FILE"); p != "" {
		if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.WriteString(line)
			f.Close()
		}
	}
}
