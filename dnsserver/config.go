package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
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
	// MaxSockets is the largest Sockets value New accepts.
	MaxSockets = 64
	// defaultSocketsCap caps the default socket count: past a few sockets
	// per core-group the kernel's receive queues, not the readers, limit.
	defaultSocketsCap = 16
	// maxTCPConnsLimit is the largest TCPMaxConns New accepts.
	maxTCPConnsLimit = 1 << 20
	// maxRRLRate is the largest RRLRate New accepts.
	maxRRLRate = 1 << 24
)

// DefaultSockets is the default Sockets: GOMAXPROCS, at most 16.
func DefaultSockets() int { return min(runtime.GOMAXPROCS(0), defaultSocketsCap) }

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
	// Sockets is the number of UDP sockets and of TCP listeners bound to
	// Addr with SO_REUSEPORT, each with its own reader, so that the kernel
	// spreads queries over cores. 1 to MaxSockets (64). Default
	// DefaultSockets(): GOMAXPROCS, at most 16. Where SO_REUSEPORT does
	// not exist, the server binds one of each and logs it.
	Sockets int
	// TCPMaxConns bounds the open DNS TCP connections of all listeners
	// together; a connection past it is closed at once. 1 to 1<<20.
	// Default 1024: TCP is the fallback for truncated answers, and 1024
	// file descriptors is what a small node can spare.
	TCPMaxConns int
	// TCPIdleTimeout closes a TCP connection that sends no query for this
	// long, and bounds the wait for a client to read an answer. 100ms to
	// 10m. Default 10s: RFC 7766 asks for seconds, not minutes.
	TCPIdleTimeout time.Duration
	// RRLRate is the response-rate limit: responses per second over UDP to
	// one client network (a /24 for IPv4, a /56 for IPv6). Past it,
	// answers are dropped, except that every second one is sent truncated
	// (TC=1) so that a real client retries over TCP. 0 turns it off; 0 to
	// 1<<24. Default 0 (off); the README recommends a value for nodes that
	// an untrusted network can reach.
	RRLRate int
	// RRLMaxClients bounds the client networks the rate limiter tracks; the
	// least recently seen are evicted past it. Default 65536 (a few MiB).
	RRLMaxClients int
	// DisableReverse turns off the PTR answers under in-addr.arpa. and
	// ip6.arpa.; those names are then REFUSED. Default false: reverse
	// lookups of the addresses Herald holds are answered.
	DisableReverse bool
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
		Addr:           "127.0.0.1:8600",
		Domain:         "herald.",
		TTL:            5 * time.Second,
		NegativeTTL:    time.Second,
		MaxUDPSize:     DefaultMaxUDPSize,
		Sockets:        DefaultSockets(),
		TCPMaxConns:    1024,
		TCPIdleTimeout: 10 * time.Second,
		RRLMaxClients:  1 << 16,
		Logger:         slog.Default(),
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
	if c.Sockets == 0 {
		c.Sockets = d.Sockets
	}
	if c.TCPMaxConns == 0 {
		c.TCPMaxConns = d.TCPMaxConns
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = d.TCPIdleTimeout
	}
	if c.RRLMaxClients == 0 {
		c.RRLMaxClients = d.RRLMaxClients
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
	if c.Sockets < 1 || c.Sockets > MaxSockets {
		return fmt.Errorf("dnsserver: config: sockets %d must be between 1 and %d", c.Sockets, MaxSockets)
	}
	if c.TCPMaxConns < 1 || c.TCPMaxConns > maxTCPConnsLimit {
		return fmt.Errorf("dnsserver: config: tcp max conns %d must be between 1 and %d", c.TCPMaxConns, maxTCPConnsLimit)
	}
	if c.TCPIdleTimeout < 100*time.Millisecond || c.TCPIdleTimeout > 10*time.Minute {
		return fmt.Errorf("dnsserver: config: tcp idle timeout %s must be between 100ms and 10m", c.TCPIdleTimeout)
	}
	if c.RRLRate < 0 || c.RRLRate > maxRRLRate {
		return fmt.Errorf("dnsserver: config: rrl rate %d must be between 0 (off) and %d", c.RRLRate, maxRRLRate)
	}
	if c.RRLMaxClients < 1 || c.RRLMaxClients > 1<<24 {
		return fmt.Errorf("dnsserver: config: rrl max clients %d must be between 1 and %d", c.RRLMaxClients, 1<<24)
	}
	return nil
}
