package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/dnsserver"
)

// TestDefaultConfigFromPackages: the agent's defaults are the packages'
// defaults, not copies of them.
func TestDefaultConfigFromPackages(t *testing.T) {
	c, cl, dns := DefaultConfig(), cluster.DefaultConfig(nil), dnsserver.DefaultConfig()
	if c.Bind != cl.BindAddr || c.JoinTimeout != cl.JoinTimeout || c.SyncInterval != cl.SyncInterval ||
		c.ReapFailed != cl.ReapFailed || c.ProbeInterval != cl.ProbeInterval ||
		c.ProbeTimeout != cl.ProbeTimeout || c.SuspicionMult != cl.SuspicionMult {
		t.Errorf("cluster settings %+v differ from cluster.DefaultConfig", c)
	}
	if c.DNSAddr != dns.Addr || c.Domain != dns.Domain || c.DNSTTL != dns.TTL {
		t.Errorf("DNS settings %q %q %s differ from dnsserver.DefaultConfig", c.DNSAddr, c.Domain, c.DNSTTL)
	}
	if err := c.validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
}

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	c := d
	c.JoinTimeout, c.SyncInterval, c.ReapFailed, c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = 0, 0, 0, 0, 0, 0
	c.DNSTTL, c.DrainGrace, c.Logger, c.Domain = 0, 0, nil, "Example.ORG"
	c.setDefaults()
	if c.JoinTimeout != d.JoinTimeout || c.SyncInterval != d.SyncInterval || c.ReapFailed != d.ReapFailed ||
		c.ProbeInterval != d.ProbeInterval || c.ProbeTimeout != d.ProbeTimeout || c.SuspicionMult != d.SuspicionMult || c.Logger == nil {
		t.Errorf("zero fields not filled from DefaultConfig: %+v", c)
	}
	if c.DNSTTL != 0 || c.DrainGrace != 0 || c.Domain != "example.org." {
		t.Errorf("dns ttl %s drain grace %s domain %q: want 0, 0, example.org.", c.DNSTTL, c.DrainGrace, c.Domain)
	}

	for want, mod := range map[string]func(*Config){
		"-domain":         func(c *Config) { c.Domain = "" },
		"-dns-ttl":        func(c *Config) { c.DNSTTL = -time.Second },
		"-reap-failed":    func(c *Config) { c.ReapFailed = -time.Second },
		"-drain-grace":    func(c *Config) { c.DrainGrace = -time.Second },
		"-suspicion-mult": func(c *Config) { c.SuspicionMult = -1 },
		"-grpc-addr":      func(c *Config) { c.GRPCAddr = "" },
		"-recover-store":  func(c *Config) { c.RecoverStore = true },
	} {
		c := DefaultConfig()
		mod(&c)
		c.setDefaults()
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming it", want, err)
		}
	}
}
