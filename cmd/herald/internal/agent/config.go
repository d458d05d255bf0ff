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

	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/checks"
	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/dnsserver"
	"github.com/herald-sd/herald/pushsvc/httpapi"
)

// Config is everything `herald agent` takes on its command line.
//
// The config convention, the same in every Herald server package (dnsserver,
// pushsvc, cluster, cluster/registry and the agent):
//   - DefaultConfig returns every default, and each field's comment gives its
//     default and the reason for it. The defaults of the settings the agent
//     passes on to a package come from that package's DefaultConfig, and the
//     flag help shows them.
//   - Run takes the config by value and, once, fills each zero field that
//     has a default with DefaultConfig's value (setDefaults, which rejects
//     nothing). Here those are the durations and counts the packages default
//     and Logger. The command line starts from DefaultConfig, so an empty
//     name or address is one the user typed: it is rejected, not filled;
//     DNSTTL, DrainGrace and ClockOffset keep their zero, which means
//     something.
//   - Run then validates (validate, which changes nothing) and fails on the
//     first invalid field.
type Config struct {
	// Dev runs a single in-memory node with everything on 127.0.0.1.
	// Default false.
	Dev bool
	// Node is this node's name, a DNS label. Default: the host name, folded
	// into a label, so that each host has its own name without a flag.
	Node string
	// Bind is the Serf gossip address. Default: the cluster package's
	// (127.0.0.1:7946, loopback on Serf's port).
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
	// JoinTimeout bounds the retries of Join. Default: the cluster
	// package's (30s).
	JoinTimeout time.Duration
	// Encrypt is a base64 gossip key (16, 24 or 32 bytes). Default none.
	Encrypt string
	// EncryptFile holds the gossip key instead of Encrypt, which `ps`
	// shows; it must not be readable by other users. Default none.
	EncryptFile string
	// TLSCA, TLSCert and TLSKey (PEM files, all three or none) make the
	// gRPC listener serve mutual TLS only and peers dial each other with
	// it; see heraldtls and cluster.Config.PeerTLS. Default none.
	TLSCA, TLSCert, TLSKey string
	// SyncInterval is the anti-entropy period. Default: the cluster
	// package's (30s).
	SyncInterval time.Duration
	// ReapFailed is how long a failed node's instances stay. Default: the
	// cluster package's (500ms).
	ReapFailed time.Duration
	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection:
	// lower values remove a dead node's instances sooner and risk false
	// positives on a loaded host. Default: the cluster package's (400ms,
	// 200ms, 3), whose reasons cluster.Config gives.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// DNSAddr serves DNS over UDP and TCP. Default: the dnsserver package's
	// (127.0.0.1:8600).
	DNSAddr string
	// GRPCAddr serves the API, Watch and peer replication. Default
	// 127.0.0.1:8700: loopback, so that nothing is exposed until asked.
	GRPCAddr string
	// HTTPAddr serves /metrics, /healthz, /readyz, the HTTP API, its
	// Consul-compatible subset and the console (pushsvc/httpapi). Default
	// 127.0.0.1:8800, loopback as GRPCAddr.
	HTTPAddr string
	// HTTPMaxWatches caps the HTTP API's open SSE watch streams. Default:
	// the httpapi package's (10000).
	HTTPMaxWatches int
	// Domain is the DNS zone; Run puts it in lower case and adds the final
	// dot. Default: the dnsserver package's ("herald.").
	Domain string
	// DNSTTL is the TTL of DNS answers; 0 is allowed. Default: the
	// dnsserver package's (5s).
	DNSTTL time.Duration
	// DNSSockets is the number of UDP sockets and TCP listeners on DNSAddr
	// (SO_REUSEPORT). Default: the dnsserver package's (GOMAXPROCS, at
	// most 16).
	DNSSockets int
	// DNSTCPMaxConns caps open DNS TCP connections. Default: the dnsserver
	// package's (1024).
	DNSTCPMaxConns int
	// DNSTCPIdleTimeout closes idle DNS TCP connections. Default: the
	// dnsserver package's (10s).
	DNSTCPIdleTimeout time.Duration
	// DNSRRLRate is the DNS response-rate limit per client network and
	// second; 0 is off. Default 0, as the dnsserver package's.
	DNSRRLRate int
	// DNSDisableReverse turns off PTR answers (flag -dns-reverse=false).
	// Default false: reverse lookups are answered.
	DNSDisableReverse bool
	// DataDir persists the node's plain registrations and the Serf members
	// it knows (serf.snapshot), so that a restart rejoins them without
	// -join. Default none (memory), which suits -dev and tests.
	DataDir string
	// RecoverStore starts the agent even if the store file in DataDir is
	// damaged: the file is moved aside (registrations.db.damaged-<time>),
	// what can be read of it is kept, and what was lost is logged. Default
	// false: a damaged file stops the agent with an error naming it.
	RecoverStore bool
	// DrainGrace is how long a shutting-down node keeps serving its
	// instances as draining before it leaves the cluster, so that watchers
	// move new traffic away before the instances disappear. 0 leaves at
	// once. Default 1s: Watch clients hear of the drain within
	// milliseconds, and a deploy is not held up for long.
	DrainGrace time.Duration
	// ClockOffset shifts the registry's clock (the physical part of its
	// write stamps) by this much: a testing aid that steps one node's clock
	// without touching the host's. Default 0.
	ClockOffset time.Duration
	// ACLFile is the JSON access policy of the gRPC API (pushsvc/acl),
	// reread on SIGHUP. Default none: every request is allowed.
	ACLFile string
	// CheckConcurrency is the most active health checks (tcp, http, grpc)
	// this node probes at once (cluster/checks). Default 64; at most 4096.
	CheckConcurrency int
	// Services are registered at start, as this node's own (the config
	// file's "services"). Default none.
	Services []*registry.Instance
	// ServiceUpdates, when set, carries new lists of Services (a config
	// reload): the agent registers what is new or changed and deregisters
	// what the previous list had and this one lacks.
	ServiceUpdates <-chan []*registry.Instance
	// Limits bound what clients and peers can make the node hold
	// (limits.go). Default: DefaultLimits.
	Limits Limits
	// Logger. Default slog.Default(), the process's logger.
	Logger *slog.Logger
}

// MaxCheckConcurrency bounds Config.CheckConcurrency.
const MaxCheckConcurrency = 4096

// DefaultConfig returns the defaults of every field. The settings the agent
// passes on to a package take that package's defaults.
func DefaultConfig() Config {
	cl := cluster.DefaultConfig(nil)
	dns := dnsserver.DefaultConfig()
	c := Config{
		Node:              defaultNodeName(),
		Bind:              cl.BindAddr,
		JoinTimeout:       cl.JoinTimeout,
		SyncInterval:      cl.SyncInterval,
		ReapFailed:        cl.ReapFailed,
		ProbeInterval:     cl.ProbeInterval,
		ProbeTimeout:      cl.ProbeTimeout,
		SuspicionMult:     cl.SuspicionMult,
		DNSAddr:           dns.Addr,
		GRPCAddr:          "127.0.0.1:8700",
		HTTPAddr:          "127.0.0.1:8800",
		Domain:            dns.Domain,
		DNSTTL:            dns.TTL,
		DNSSockets:        dns.Sockets,
		DNSTCPMaxConns:    dns.TCPMaxConns,
		DNSTCPIdleTimeout: dns.TCPIdleTimeout,
		DNSRRLRate:        dns.RRLRate,
		DrainGrace:        time.Second,
		Limits:            DefaultLimits(),
		Logger:            slog.Default(),

		CheckConcurrency: checks.DefaultConcurrency,
	}
	c.HTTPMaxWatches = httpapi.DefaultConfig().MaxWatches
	return c
}

// setDefaults fills the zero durations and counts that have a default, and
// Logger, from DefaultConfig, and puts Domain in canonical form. It rejects
// nothing; validate does.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.JoinTimeout, &d.JoinTimeout},
		{&c.SyncInterval, &d.SyncInterval},
		{&c.ReapFailed, &d.ReapFailed},
		{&c.ProbeInterval, &d.ProbeInterval},
		{&c.ProbeTimeout, &d.ProbeTimeout},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.CheckConcurrency == 0 {
		c.CheckConcurrency = d.CheckConcurrency
	}
	c.Limits.setDefaults()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Domain != "" && !strings.HasSuffix(c.Domain, ".") {
		c.Domain += "."
	}
	c.Domain = strings.ToLower(c.Domain)
}

// Check fills the defaults and validates the config, as Run does, without
// starting anything (herald validate).
func (c *Config) Check() error {
	c.setDefaults()
	return c.validate()
}

// validate rejects invalid values. It changes nothing.
func (c Config) validate() error {
	if c.Domain == "" {
		return fmt.Errorf("agent: -domain must not be empty")
	}
	for _, f := range []struct {
		flag string
		v    time.Duration
	}{
		{"-dns-ttl", c.DNSTTL},
		{"-join-timeout", c.JoinTimeout},
		{"-sync-interval", c.SyncInterval},
		{"-reap-failed", c.ReapFailed},
		{"-probe-interval", c.ProbeInterval},
		{"-probe-timeout", c.ProbeTimeout},
		{"-drain-grace", c.DrainGrace},
	} {
		if f.v < 0 {
			return fmt.Errorf("agent: %s %s must not be negative", f.flag, f.v)
		}
	}
	if c.DNSSockets < 0 || c.DNSSockets > dnsserver.MaxSockets {
		return fmt.Errorf("agent: -dns-sockets %d must be between 1 and %d (0: the default, GOMAXPROCS at most 16)", c.DNSSockets, dnsserver.MaxSockets)
	}
	if c.DNSTCPMaxConns < 0 {
		return fmt.Errorf("agent: -dns-tcp-max-conns %d must not be negative", c.DNSTCPMaxConns)
	}
	if c.DNSTCPIdleTimeout < 0 {
		return fmt.Errorf("agent: -dns-tcp-idle-timeout %s must not be negative", c.DNSTCPIdleTimeout)
	}
	if c.DNSRRLRate < 0 {
		return fmt.Errorf("agent: -dns-rrl-rate %d must not be negative (0 is off)", c.DNSRRLRate)
	}
	if c.CheckConcurrency < 0 || c.CheckConcurrency > MaxCheckConcurrency {
		return fmt.Errorf("agent: -check-concurrency %d must be between 1 and %d", c.CheckConcurrency, MaxCheckConcurrency)
	}
	if c.SuspicionMult < 0 {
		return fmt.Errorf("agent: -suspicion-mult %d must not be negative", c.SuspicionMult)
	}
	if c.HTTPMaxWatches < 0 {
		return fmt.Errorf("agent: -http-max-watches %d must not be negative", c.HTTPMaxWatches)
	}
	for name, a := range map[string]string{"-bind": c.Bind, "-dns-addr": c.DNSAddr, "-grpc-addr": c.GRPCAddr, "-http-addr": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("agent: %s %q: want host:port: %w", name, a, err)
		}
	}
	if err := c.Limits.validate(); err != nil {
		return err
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
