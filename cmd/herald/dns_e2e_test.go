package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentDNSFlags runs a real agent with the DNS flags of issue #10 and
// asks it with dig: SO_REUSEPORT sockets, PTR (dig -x) and its forward
// name, tagged SRV with duplicate suppression, and -dns-reverse=false.
func TestAgentDNSFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dig := requireDig(t)
	a := startAgent(t, "-dev", "-dns-sockets", "3", "-dns-rrl-rate", "1000")
	if !strings.Contains(a.logText(), "sockets=3") {
		t.Errorf("log does not report 3 DNS sockets:\n%s", a.logText())
	}
	a.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000", "-tag", "v1", "-weight", "2")
	a.mustCLI("register", "-service", "api", "-id", "api-2", "-address", "10.0.0.5", "-port", "9000", "-tag", "v1", "-weight", "3")
	if got := strings.Join(a.dig("-x", "10.0.0.5"), " "); got != "api-1.api.service.herald. api-2.api.service.herald." {
		t.Fatalf("dig -x 10.0.0.5 = %q", got)
	}
	if got := strings.Join(a.dig("api-2.api.service.herald", "A"), " "); got != "10.0.0.5" {
		t.Fatalf("forward of the PTR = %q", got)
	}
	if got := strings.Join(a.dig("_v1._api._tcp.service.herald", "SRV"), " "); got != "1 5 9000 0a000005.addr.herald." {
		t.Fatalf("tagged SRV (duplicates merged) = %q", got)
	}

	b := startAgent(t, "-dev", "-dns-reverse=false")
	b.mustCLI("register", "-service", "api", "-id", "api-1", "-address", "10.0.0.5", "-port", "9000")
	host, port := strings.Split(b.dns, ":")[0], strings.Split(b.dns, ":")[1]
	out, err := exec.Command(dig, "@"+host, "-p", port, "+tries=1", "+time=2", "-x", "10.0.0.5").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "status: REFUSED") {
		t.Fatalf("dig -x with -dns-reverse=false: %v\n%s", err, out)
	}
}
