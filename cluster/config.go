package cluster

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-sd/herald/cluster/registry"
)

// Config configures a Cluster.
//
// The config convention, the same in every Herald server package (dnsserver,
// pushsvc, cluster, cluster/registry and the agent):
//   - DefaultConfig returns every default, and each field's comment gives its
//     default and the reason for it. Start from DefaultConfig (or FastConfig,
//     for tests and loopback clusters) and override.
//   - New takes the config by value and, once, fills each zero field that
//     has a default with DefaultConfig's value (setDefaults, which rejects
//     nothing).
//   - New then validates (validate, which changes nothing) and fails on the
//     first invalid field.
//   - The config may not change after New.
//
// Failure detection is memberlist's SWIM with Lifeguard. The time from a
// kill -9 to the owner's instances being gone everywhere is about
//
//	ProbeInterval (someone probes the dead node) + ProbeTimeout (+ indirect probes)
//	+ suspicion (SuspicionMult * ProbeInterval once one other node confirms,
//	  up to SuspicionMaxTimeoutMult times that without confirmation)
//	+ GossipInterval rounds (the dead message spreads) + ReapFailed
//
// which the defaults put at 2.3 to 2.7 s (measured: 5 agents on loopback),
// and near 4 s when a confirming probe is late. Every knob that makes it
// faster also makes false positives more likely under load: a
// shorter ProbeTimeout declares a slow (CPU-starved, GC-paused) node suspect,
// and a lower SuspicionMult gives it less time to refute. A false positive
// costs little here: the node refutes, and its instances come back through
// sync. Raise ProbeTimeout and SuspicionMult for WANs or overloaded hosts.
type Config struct {
	// NodeName is this node's unique name in the cluster. Default: the
	// registry's node name, which it must equal: the registry owns this
	// node's instances under that name.
	NodeName string
	// BindAddr is the Serf (memberlist) address, TCP and UDP; its host must
	// be an IP address. Port 0 picks a free port. Default 127.0.0.1:7946:
	// loopback, so that nothing is exposed until asked, on Serf's port.
	BindAddr string
	// AdvertiseAddr is the address peers use to reach Serf; it must not be
	// 0.0.0.0 or ::. Default: BindAddr (with the port actually bound), or,
	// when BindAddr's host is 0.0.0.0 or ::, this host's private IP address
	// (as Consul picks it; New fails when there is none).
	AdvertiseAddr string
	// Join lists Serf addresses of existing members. Default none: start a
	// new cluster, which is what a single node needs.
	Join []string
	// JoinTimeout bounds the join retries (with backoff) in Start. Default
	// 30s: peers that start at the same time have time to come up, and a
	// wrong address still fails the start soon.
	JoinTimeout time.Duration
	// RetryJoin lists Serf addresses to join in the background after Start,
	// retrying until one attempt succeeds. Unlike Join it never fails
	// Start; until it succeeds, Ready reports ErrNotJoined while no other
	// member is alive. Default none, as Join.
	RetryJoin []string
	// RetryJoinMaxWait caps the wait between RetryJoin attempts, which
	// starts at 500ms and doubles. Default 30s: a node that started long
	// before its peers finds them within 30s of their start, for one join
	// attempt every 30s meanwhile.
	RetryJoinMaxWait time.Duration
	// SnapshotPath is a file in which Serf keeps the members it knows and its
	// clocks, so that a restarted node rejoins them by itself, without Join.
	// A node that left gracefully rejoins too (Serf's RejoinAfterLeave):
	// Herald leaves on every SIGTERM, so without it a plain restart (a
	// deploy, a reboot) would strand the node alone. Herald has no quorum
	// that a returning node could upset, and a rejoined node's state comes
	// back through sync. To retire a node, do not start it again; to start
	// it into another cluster, delete the file. Default empty: no snapshot.
	SnapshotPath string
	// GRPCAddr is this node's gRPC address, advertised in the Serf tag "grpc";
	// peers replicate to it. Required to receive replication. An unspecified
	// host (0.0.0.0, ::) is replaced by the node's Serf address. Default
	// empty: the node takes no replication (the agent always sets it).
	GRPCAddr string
	// DNSAddr is advertised in the Serf tag "dns". Default empty: not
	// advertised. Herald does not read it; `herald members` shows it.
	DNSAddr string
	// EncryptKey is a base64 key of 16, 24 or 32 bytes that turns on Serf's
	// keyring encryption. Without PeerTLS, peers must also prove they hold
	// it to use the peer service (package peerauth). Default empty: no
	// encryption, as no key can be shared by default.
	EncryptKey string
	// PeerTLS turns on mutual TLS between peers: it is the client side's
	// config (the CA in RootCAs, this node's certificate, which must name
	// it in a DNS SAN and allow server and client authentication). Peers
	// are dialed with it, with ServerName set to the member's name, and the
	// peer service then accepts only callers whose verified certificate
	// names the node they claim to be (see peerauth.go). The gRPC server
	// must then require and verify client certificates. Default nil: no
	// TLS; with EncryptKey, peers prove they hold the key instead.
	PeerTLS *tls.Config
	// SyncInterval is the anti-entropy period: compare digests with a random
	// peer and pull what is newer. Default 30s: deltas and gap repair carry
	// the changes, and anti-entropy is only their backstop, at one digest
	// exchange per node per interval.
	SyncInterval time.Duration
	// ReapFailed is how long a node that Serf marks failed keeps its instances
	// before they are removed everywhere. Default 500ms: the failure detector
	// has already waited out the suspicion period, so this only absorbs a
	// late refute.
	ReapFailed time.Duration

	// ProbeInterval: 400ms (memberlist LAN: 1s) cuts the time until some
	// node probes a dead one; it costs one small UDP packet per node per round.
	ProbeInterval time.Duration
	// ProbeTimeout: 200ms (LAN: 500ms); LAN round trips are well under 1ms,
	// but a CPU-starved node needs slack before it is suspected.
	ProbeTimeout time.Duration
	// SuspicionMult: 3 (LAN: 4); a suspect has 3 probe intervals (1.2s) to
	// refute once another node confirms the suspicion.
	SuspicionMult int
	// SuspicionMaxTimeoutMult: 4 (LAN: 6); without confirmations (two-node
	// clusters) suspicion lasts at most 4x the minimum (4.8s).
	SuspicionMaxTimeoutMult int
	// GossipInterval: 100ms (LAN: 200ms); suspect and dead messages reach
	// every node in fewer rounds, for twice the gossip packets.
	GossipInterval time.Duration

	// ReconnectInterval: 1s (Serf: 30s); how often Serf tries to reach failed
	// members, so a healed partition merges within about a second. Each try
	// is one TCP connect to each failed member.
	ReconnectInterval time.Duration
	// PushPullInterval: 5s (LAN: 30s); the full membership sync between two
	// random nodes, which heals a membership view that gossip left partial
	// (for example after several nodes joined at once). One TCP exchange of
	// the member list per node per interval.
	PushPullInterval time.Duration

	// MaxBatch bounds the deltas in one replication message (which is also
	// cut at 1 MiB). Default 4096: a burst of changes goes out in a few
	// messages.
	MaxBatch int
	// Transfers bound the full states this node receives from peers
	// (transfer.go). Each zero field takes DefaultTransferLimits' value.
	Transfers TransferLimits
	// Registry is this node's registry, usually a *registry.Registry.
	// Required.
	Registry Registry
	// Logger receives the cluster's logs and Serf's. Default slog.Default(),
	// the process's logger.
	Logger *slog.Logger
	// Registerer receives the cluster metrics. Default nil: a private
	// registry (metrics not exported), which a test does not need.
	Registerer prometheus.Registerer

	// dropDelta is a test hook (export_test.go): when it returns true, the
	// delta is not sent to that peer (the sender moves past it, as if it was
	// lost).
	dropDelta func(peer string, d registry.Delta) bool
}

// DefaultConfig returns the defaults of every field for a node using reg;
// reg may be nil where only the defaults are wanted.
func DefaultConfig(reg Registry) Config {
	c := Config{
		Registry:                reg,
		BindAddr:                "127.0.0.1:7946",
		JoinTimeout:             30 * time.Second,
		RetryJoinMaxWait:        30 * time.Second,
		SyncInterval:            30 * time.Second,
		ReapFailed:              500 * time.Millisecond,
		ProbeInterval:           400 * time.Millisecond,
		ProbeTimeout:            200 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 4,
		GossipInterval:          100 * time.Millisecond,
		ReconnectInterval:       time.Second,
		PushPullInterval:        5 * time.Second,
		MaxBatch:                4096,
		Logger:                  slog.Default(),
	}
	if reg != nil {
		c.NodeName = reg.NodeName()
	}
	return c
}

// FastConfig is DefaultConfig with short timers, for tests and for
// clusters on one host (loopback), as memberlist's DefaultLocalConfig is:
// nodes bind 127.0.0.1:0, a join gives up after 5s, and a killed node's
// instances are gone from its peers in one to two seconds. The timers keep
// some slack for -race on a loaded 2-core machine, where flapping members
// would only slow the tests down. Do not use it across real networks.
func FastConfig(reg Registry) Config {
	c := DefaultConfig(reg)
	c.BindAddr = "127.0.0.1:0"
	c.JoinTimeout = 5 * time.Second
	c.ReapFailed = 100 * time.Millisecond
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 2
	c.GossipInterval = 20 * time.Millisecond
	return c
}

// setDefaults fills the zero fields that have a default from DefaultConfig.
// It rejects nothing; validate does.
func (c *Config) setDefaults() {
	d := DefaultConfig(c.Registry)
	if c.NodeName == "" {
		c.NodeName = d.NodeName
	}
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.JoinTimeout, &d.JoinTimeout},
		{&c.RetryJoinMaxWait, &d.RetryJoinMaxWait},
		{&c.SyncInterval, &d.SyncInterval},
		{&c.ReapFailed, &d.ReapFailed},
		{&c.ProbeInterval, &d.ProbeInterval},
		{&c.ProbeTimeout, &d.ProbeTimeout},
		{&c.GossipInterval, &d.GossipInterval},
		{&c.ReconnectInterval, &d.ReconnectInterval},
		{&c.PushPullInterval, &d.PushPullInterval},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *int }{
		{&c.SuspicionMult, &d.SuspicionMult},
		{&c.SuspicionMaxTimeoutMult, &d.SuspicionMaxTimeoutMult},
		{&c.MaxBatch, &d.MaxBatch},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	c.Transfers.setDefaults()
}

// validate rejects invalid values and returns the decoded encryption key.
// It changes nothing.
func (c Config) validate() (key []byte, err error) {
	if c.Registry == nil {
		return nil, errors.New("cluster: config: Registry is required")
	}
	if c.NodeName != c.Registry.NodeName() {
		return nil, fmt.Errorf("cluster: config: node name %q differs from the registry's %q", c.NodeName, c.Registry.NodeName())
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return nil, fmt.Errorf("cluster: config: bind address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("cluster: config: advertise address: %w", err)
		}
	}
	if c.GRPCAddr != "" {
		if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			return nil, fmt.Errorf("cluster: config: gRPC address: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"join timeout", c.JoinTimeout},
		{"retry join max wait", c.RetryJoinMaxWait},
		{"sync interval", c.SyncInterval},
		{"reap failed", c.ReapFailed},
		{"probe interval", c.ProbeInterval},
		{"probe timeout", c.ProbeTimeout},
		{"gossip interval", c.GossipInterval},
		{"reconnect interval", c.ReconnectInterval},
		{"push pull interval", c.PushPullInterval},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("cluster: config: %s %s must not be negative", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"suspicion mult", c.SuspicionMult},
		{"suspicion max timeout mult", c.SuspicionMaxTimeoutMult},
		{"max batch", c.MaxBatch},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("cluster: config: %s %d must not be negative", f.name, f.v)
		}
	}
	if err := c.Transfers.validate(); err != nil {
		return nil, err
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return nil, fmt.Errorf("cluster: config: probe timeout %s must be shorter than the probe interval %s", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.EncryptKey != "" {
		key, err = base64.StdEncoding.DecodeString(c.EncryptKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: config: encrypt key is not base64: %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("cluster: config: encrypt key is %d bytes; it must be 16, 24 or 32", n)
		}
	}
	return key, nil
}

// splitHostPort splits an IP:port address.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", addr)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%q: the host must be an IP address", addr)
	}
	return host, port, nil
}
