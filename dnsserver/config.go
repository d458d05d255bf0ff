package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-sd/herald/cluster/registry"
)

// Source gives the server the registry view to answer from. A
// *registry.Registry satisfies it. Snapshot must be cheap and lock-free: it is
// called once per query.
type Source interface {
	Snapshot() *registry.Snapshot
}

// Limits of the EDNS0 UDP payload size this server honours.
const (
	// DefaultMaxUDPSize is the default cap on a client's EDNS0 buffer size.
	// 1232 bytes avoids IP fragmentation on any path with an MTU of 1280
	// (the DNS flag day 2020 recommendation).
	DefaultMaxUDPSize = 1232
	// maxUDPSizeLimit is the largest cap New accepts.
	maxUDPSizeLimit = 65535
)

// Config configures a Server or a Handler. Use DefaultConfig and override
// fields; New validates it, and it may not change afterwards.
type Config struct {
	// Addr is the address the server listens on, for UDP and TCP alike.
	// Port 0 picks a free port (the same one for both); an empty host
	// listens on every interface. Default
	// "127.0.0.1:8600".
	Addr string
	// Domain is the zone the server is authoritative for, as a fully
	// qualified name. Default "herald.".
	Domain string
	// TTL is the TTL of every positive record. Zero is allowed and asks
	// resolvers not to cache, so a zero value is kept as is: start from
	// DefaultConfig. Default 5s.
	TTL time.Duration
	// NegativeTTL is the SOA minimum and SOA TTL, so it bounds how long
	// resolvers cache NXDOMAIN and NODATA answers (RFC 2308). Like TTL, zero
	// is kept. Default 1s.
	NegativeTTL time.Duration
	// MaxUDPSize caps the EDNS0 UDP payload size a client may ask for, and
	// is the size this server advertises in its OPT record. Clients without
	// EDNS0 get at most 512 bytes over UDP. 512 to 65535; default
	// DefaultMaxUDPSize (1232).
	MaxUDPSize int
	// Logger receives serve errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the DNS metrics. Default nil: no metrics.
	Registerer prometheus.Registerer
	// Source is the registry view to answer from. Required.
	Source Source
}

// DefaultConfig returns the defaults of every field but Source.
func DefaultConfig() Config {
	return Config{
		Addr:        "127.0.0.1:8600",
		Domain:      "herald.",
		TTL:         5 * time.Second,
		NegativeTTL: time.Second,
		MaxUDPSize:  DefaultMaxUDPSize,
		Logger:      slog.Default(),
	}
}

// validate fills empty fields with their defaults, canonicalises the domain
// and rejects invalid values.
func (c *Config) validate() error {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = d.MaxUDPSize
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Source == nil {
		return errors.New("dnsserver: config: Source is required")
	}
	if host, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("dnsserver: config: addr %q must be ip:port: %w", c.Addr, err)
	} else if _, err := netip.ParseAddr(host); host != "" && err != nil {
		return fmt.Errorf("dnsserver: config: addr %q must be ip:port or :port: %w", c.Addr, err)
	}
	c.Domain = strings.ToLower(dns.Fqdn(c.Domain))
	if c.Domain == "." || strings.Contains(c.Domain, `\`) {
		return fmt.Errorf("dnsserver: config: domain %q must be a plain name below the root", c.Domain)
	}
	if _, ok := dns.IsDomainName(c.Domain); !ok || len(c.Domain) > 200 {
		return fmt.Errorf("dnsserver: config: domain %q is not a valid domain name of at most 200 bytes", c.Domain)
	}
	if c.TTL < 0 || c.TTL > 24*time.Hour {
		return fmt.Errorf("dnsserver: config: ttl %s must be between 0 and 24h", c.TTL)
	}
	if c.NegativeTTL < 0 || c.NegativeTTL > time.Hour {
		return fmt.Errorf("dnsserver: config: negative ttl %s must be between 0 and 1h", c.NegativeTTL)
	}
	if c.MaxUDPSize < dns.MinMsgSize || c.MaxUDPSize > maxUDPSizeLimit {
		return fmt.Errorf("dnsserver: config: max udp size %d must be between %d and %d", c.MaxUDPSize, dns.MinMsgSize, maxUDPSizeLimit)
	}
	return nil
}
