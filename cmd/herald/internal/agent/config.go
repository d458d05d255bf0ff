// Package agent assembles one Herald node: the registry, its persistence,
// the DNS server, the gRPC API and watch service, the cluster and the HTTP
// endpoints (/metrics, /healthz, /readyz). It owns their start and stop order.
package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// Config is everything `herald agent` takes on its command line.
type Config struct {
	// Dev runs a single in-memory node with everything on 127.0.0.1.
	Dev bool
	// Node is this node's name, a DNS label. Default: the host name, folded
	// into a label.
	Node string
	// Bind is the Serf gossip address. Default 127.0.0.1:7946.
	Bind string
	// Advertise is the Serf address peers use. Default: Bind, or, when
	// Bind's host is 0.0.0.0 or ::, this host's private IP address (the
	// agent refuses to start when there is none).
	Advertise string
	// Join lists Serf addresses of nodes to join. Default none.
	Join []string
	// RetryJoin lists Serf addresses to join in the background, retrying
	// with backoff (up to 30s apart) until one join succeeds; /readyz says
	// "cluster: not joined" until then while the node is alone. Default none.
	RetryJoin []string
	// JoinTimeout bounds the retries of Join. Default 30s.
	JoinTimeout time.Duration
	// Encrypt is a base64 gossip key (16, 24 or 32 bytes). Default none.
	Encrypt string
	// SyncInterval is the anti-entropy period. Default 30s.
	SyncInterval time.Duration
	// ReapFailed is how long a failed node's instances stay. Default: the
	// cluster package's.
	ReapFailed time.Duration
	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection:
	// lower values remove a dead node's instances sooner and risk false
	// positives on a loaded host. Zero: the cluster package's defaults
	// (400ms, 200ms, 3).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// DNSAddr serves DNS over UDP and TCP. Default 127.0.0.1:8600.
	DNSAddr string
	// GRPCAddr serves the API, Watch and peer replication. Default 127.0.0.1:8700.
	GRPCAddr string
	// HTTPAddr serves /metrics, /healthz and /readyz. Default 127.0.0.1:8800.
	HTTPAddr string
	// Domain is the DNS zone. Default "herald.".
	Domain string
	// DNSTTL is the TTL of DNS answers; 0 is allowed. Default 5s.
	DNSTTL time.Duration
	// DataDir persists the node's plain registrations and the Serf members
	// it knows (serf.snapshot), so that a restart rejoins them without
	// -join. Default none (memory).
	DataDir string
	// RecoverStore starts the agent even if the store file in DataDir is
	// damaged: the file is moved aside (registrations.db.damaged-<time>),
	// what can be read of it is kept, and what was lost is logged. Default
	// false: a damaged file stops the agent with an error naming it.
	RecoverStore bool
	// DrainGrace is how long a shutting-down node keeps serving its
	// instances as draining before it leaves the cluster, so that watchers
	// move new traffic away before the instances disappear. Default 1s.
	DrainGrace time.Duration
	// ClockOffset shifts the registry's clock (the physical part of its
	// write stamps) by this much: a testing aid that steps one node's clock
	// without touching the host's. Default 0.
	ClockOffset time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of every field.
func DefaultConfig() Config {
	return Config{
		Node:         defaultNodeName(),
		Bind:         "127.0.0.1:7946",
		JoinTimeout:  30 * time.Second,
		SyncInterval: 30 * time.Second,
		DNSAddr:      "127.0.0.1:8600",
		GRPCAddr:     "127.0.0.1:8700",
		HTTPAddr:     "127.0.0.1:8800",
		Domain:       "herald.",
		DNSTTL:       5 * time.Second,
		DrainGrace:   time.Second,
	}
}

func (c *Config) validate() error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Domain == "" {
		return fmt.Errorf("agent: -domain must not be empty")
	}
	if !strings.HasSuffix(c.Domain, ".") {
		c.Domain += "."
	}
	c.Domain = strings.ToLower(c.Domain)
	if c.DNSTTL < 0 {
		return fmt.Errorf("agent: -dns-ttl %s must not be negative", c.DNSTTL)
	}
	for name, a := range map[string]string{"-bind": c.Bind, "-dns-addr": c.DNSAddr, "-grpc-addr": c.GRPCAddr, "-http-addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("agent: %s %q: want host:port: %w", name, a, err)
		}
	}
	if c.RecoverStore && c.DataDir == "" {
		return fmt.Errorf("agent: -recover-store needs -data-dir")
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("agent: -advertise %q: want host:port: %w", c.Advertise, err)
		}
	}
	for _, a := range c.RetryJoin {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("agent: -retry-join %q: want host:port: %w", a, err)
		}
	}
	return nil
}

// defaultNodeName folds the host name into a DNS label.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "herald"
	}
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	if s == "" {
		return "herald"
	}
	return s
}
