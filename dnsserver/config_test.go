package dnsserver

import (
	"testing"

	"github.com/herald-sd/herald/cluster/registry"
)

var _ Source = (*registry.Registry)(nil)

// TestConfigZeroFields: New fills the zero fields that have a default from
// DefaultConfig, once, and keeps the zero TTLs, which mean "do not cache".
func TestConfigZeroFields(t *testing.T) {
	f := newFixture(t)
	s, err := New(Config{Source: f.reg, Domain: "Example.ORG"})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if s.cfg.Addr != d.Addr || s.cfg.MaxUDPSize != d.MaxUDPSize || s.cfg.Logger == nil {
		t.Errorf("addr %q max udp %d logger %v: want the defaults", s.cfg.Addr, s.cfg.MaxUDPSize, s.cfg.Logger)
	}
	if s.cfg.Domain != "example.org." || s.cfg.TTL != 0 || s.cfg.NegativeTTL != 0 {
		t.Errorf("domain %q ttl %s negative ttl %s, want example.org., 0, 0", s.cfg.Domain, s.cfg.TTL, s.cfg.NegativeTTL)
	}
	if h := s.Handler(); h.domain != s.cfg.Domain || h.maxUDP != s.cfg.MaxUDPSize || h.ttl != 0 {
		t.Errorf("handler domain %q max udp %d ttl %d: want the server's config", h.domain, h.maxUDP, h.ttl)
	}
}
