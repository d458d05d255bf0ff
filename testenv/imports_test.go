package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/herald-sd/herald"

// importRules is what each package's comment says it must never import,
// as import path prefixes; allowed lists exceptions under them.
var importRules = []struct {
	pkg       string
	forbidden []string
	allowed   []string
}{
	{"cluster/registry", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "google.golang.org/grpc", "github.com/miekg/dns", "github.com/prometheus"}, nil},
	{"cluster/store", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "google.golang.org/grpc", "github.com/miekg/dns"}, nil},
	{"cluster", []string{module + "/dnsserver", module + "/pushsvc", module + "/cmd"}, nil},
	{"dnsserver", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "google.golang.org/grpc", module + "/pushsvc", module + "/cluster"}, []string{module + "/cluster/registry"}},
	{"pushsvc", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/miekg/dns", module + "/cluster", module + "/dnsserver"}, []string{module + "/cluster/registry"}},
	// Policy is pure: each door maps its decisions to its own codes.
	{"pushsvc/httpapi", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/miekg/dns", module + "/cluster", module + "/dnsserver", module + "/cmd"}, []string{module + "/cluster/registry"}},
	{"pushsvc/httpapi/consul", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/miekg/dns", module + "/cluster", module + "/dnsserver", module + "/cmd"}, []string{module + "/cluster/registry"}},
	{"pushsvc/httpapi/ui", []string{"google.golang.org/grpc", module + "/cluster", module + "/pushsvc/heraldpb", module + "/cmd"}, nil},
	{"pushsvc/acl", []string{"google.golang.org/grpc", "net/http", "github.com/prometheus", module + "/cluster"}, nil},
	{"pushsvc/client", []string{module + "/cluster", module + "/pushsvc", "github.com/hashicorp/serf", "github.com/miekg/dns"}, []string{module + "/pushsvc/heraldpb", module + "/pushsvc/client", module + "/pushsvc/heraldtls"}},
	{"resolver", []string{module + "/cluster", module + "/pushsvc", "github.com/hashicorp/serf", "github.com/miekg/dns"}, []string{module + "/pushsvc/heraldpb", module + "/pushsvc/client", module + "/pushsvc/heraldtls"}},
	// TLS file handling and the peer handshake are leaves.
	{"pushsvc/heraldtls", []string{module + "/cluster", module + "/pushsvc", module + "/dnsserver", module + "/resolver", "github.com/hashicorp", "github.com/miekg/dns", "github.com/prometheus"}, []string{module + "/pushsvc/heraldtls"}},
	{"cluster/peerauth", []string{module, "google.golang.org/grpc", "github.com/hashicorp", "github.com/prometheus"}, []string{module + "/cluster/peerauth"}},
	{"pushsvc/heraldtest", []string{"github.com/hashicorp/serf", "github.com/hashicorp/memberlist", "github.com/miekg/dns", module + "/cluster", module + "/dnsserver", module + "/cmd"}, []string{module + "/cluster/registry"}},
	{"testenv/wait", []string{module + "/cluster", module + "/dnsserver", module + "/pushsvc", module + "/resolver", module + "/cmd"}, nil},
	// The server never links the test support in.
	{"cmd/herald", []string{module + "/pushsvc/heraldtest", module + "/testenv"}, nil},
	{"testenv/traffic", []string{module + "/cluster", module + "/dnsserver", module + "/pushsvc", module + "/cmd"}, []string{module + "/pushsvc/heraldpb", module + "/pushsvc/client", module + "/pushsvc/heraldtls"}},
	{"testenv", []string{module + "/cluster", module + "/dnsserver", module + "/pushsvc", module + "/cmd/herald"}, []string{module + "/pushsvc/heraldpb", module + "/pushsvc/client", module + "/pushsvc/heraldtls", module + "/cluster/clusterpb"}},
}

// TestImportRules fails when a package (with its dependencies) imports what
// its package comment forbids.
func TestImportRules(t *testing.T) {
	for _, rule := range importRules {
		t.Run(rule.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+rule.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", rule.pkg, err)
			}
			if v := violations(strings.Fields(string(out)), rule.forbidden, rule.allowed); len(v) > 0 {
				more := ""
				if len(v) > 8 {
					more = fmt.Sprintf(" and %d more", len(v)-8)
					v = v[:8]
				}
				t.Errorf("%s must never import these (see its package comment): %s%s", rule.pkg, strings.Join(v, ", "), more)
			}
		})
	}
}

func violations(deps, forbidden, allowed []string) []string {
	var out []string
	for _, d := range deps {
		if hasPrefix(d, allowed) {
			continue
		}
		if hasPrefix(d, forbidden) {
			out = append(out, d)
		}
	}
	return out
}

// hasPrefix reports whether path is one of prefixes or below one of them.
func hasPrefix(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func TestImportRuleViolations(t *testing.T) {
	deps := []string{module + "/cluster/registry", module + "/cluster", "github.com/miekg/dns"}
	got := violations(deps, []string{module + "/cluster"}, []string{module + "/cluster/registry"})
	if len(got) != 1 || got[0] != module+"/cluster" {
		t.Fatalf("violations = %v", got)
	}
}
