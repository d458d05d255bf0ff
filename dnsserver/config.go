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
)

// Limits of the EDNS0 UDP payload size this server honours.
const (
	// DefaultMaxUDPSize is the default cap on a client's EDNS0 buffer size.
	// 1232 bytes avoids IP fragmentation on any path with an MTU of 1280
	// (the DNS flag day 2020 recommendation).
	DefaultMaxUDPSize = 1232
	// maxUDPSizeLimit is the largest cap New accepts.
	maxUDPSizeLimit = 65535
)

// Config configures a Server or a Handler.
//
// The config convention, the same in every Herald server package (dnsserver,
// pushsvc, cluster, cluster/registry and the agent):
//   - DefaultConfig returns every default, and each field's comment gives its
//     default and the reason for it. Start from DefaultConfig and override.
//   - New (here also NewHandler) takes the config by value and, once, fills
//     each zero field that has a default with DefaultConfig's value
//     (setDefaults, which rejects nothing). A field whose zero value means
//     something, such as TTL, is kept as it is.
//   - New then validates (validate, which changes nothing) and fails on the
//     first invalid field.
//   - The config may not change after New.
type Config struct {
	// Addr is the address the server listens on, for UDP and TCP alike.
	// Port 0 picks a free port (the same one for both); an empty host
	// listens on every interface. Default "127.0.0.1:8600": loopback, so
	// that nothing is exposed until asked, on Consul's DNS port.
	Addr string
	// Domain is the zone the server is authoritative for, as a fully
	// qualified name; New puts it in lower case and adds the final dot.
	// Default "herald.", the zone of Herald's documented names.
	Domain string
	// TTL is the TTL of every positive record. Zero is allowed and asks
	// resolvers not to cache, so a zero value is kept as is: start from
	// DefaultConfig. Default 5s: short, so that clients that only speak DNS
	// move off a dead instance within seconds, yet long enough for resolver
	// caches to absorb bursts of lookups.
	TTL time.Duration
	// NegativeTTL is the SOA minimum and SOA TTL, so it bounds how long
	// resolvers cache NXDOMAIN and NODATA answers (RFC 2308). Like TTL, zero
	// is kept. Default 1s: a service that registers after a client looked
	// for it is found a second later.
	NegativeTTL time.Duration
	// MaxUDPSize caps the EDNS0 UDP payload size a client may ask for, and
	// is the size this server advertises in its OPT record. Clients without
	// EDNS0 get at most 512 bytes over UDP. 512 to 65535; default
	// DefaultMaxUDPSize (1232), for the reason given there.
	MaxUDPSize int
	// Logger receives serve errors. Default slog.Default(), the process's
	// logger.
	Logger *slog.Logger
	// Registerer receives the DNS metrics. Default nil: no metrics, which a
	// handler in a test or a tool does not need.
	Registerer prometheus.Registerer
	// Source is the registry view to answer from. Required: it has no
	// default.
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

// setDefaults fills the zero fields that have a default from DefaultConfig
// (TTL and NegativeTTL keep their zero) and puts Domain in canonical form.
// It rejects nothing; validate does.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	c.Domain = strings.ToLower(dns.Fqdn(c.Domain))
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = d.MaxUDPSize
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
}

// validate rejects invalid values. It changes nothing.
func (c Config) validate() error {
	if c.Source == nil {
		return errors.New("dnsserver: config: Source is required")
	}
	if host, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("dnsserver: config: addr %q must be ip:port: %w", c.Addr, err)
	} else if _, err := netip.ParseAddr(host); host != "" && err != nil {
		return fmt.Errorf("dnsserver: config: addr %q must be ip:port or :port: %w", c.Addr, err)
	}
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
