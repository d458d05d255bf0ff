package pushsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-sd/herald/cluster/registry"
	"github.com/herald-sd/herald/pushsvc/acl"
	"github.com/herald-sd/herald/pushsvc/heraldpb"
)

// Config configures a Server.
//
// The config convention, the same in every Herald server package (dnsserver,
// pushsvc, cluster, cluster/registry and the agent):
//   - DefaultConfig returns every default, and each field's comment gives its
//     default and the reason for it. Start from DefaultConfig and override.
//   - New takes the config by value and, once, fills each zero field that
//     has a default with DefaultConfig's value (setDefaults, which rejects
//     nothing).
//   - New then validates (validate, which changes nothing) and fails on the
//     first invalid field.
//   - The config may not change after New.
type Config struct {
	// Registry is the node's registry, usually a *registry.Registry.
	// Required: it has no default.
	Registry Registry
	// Logger receives the server's logs. Default slog.Default(), the
	// process's logger.
	Logger *slog.Logger
	// Metrics registers the gRPC server metrics (grpc_server_*) and Herald's
	// watch and session metrics. Default nil: no metrics, which a server in
	// a test does not need.
	Metrics prometheus.Registerer
	// ProgressInterval is how long a Watch stream may stay idle before it
	// gets a KIND_PROGRESS message. At least 10ms. Default 10s: both ends
	// notice a dead stream well before a watcher misses much.
	ProgressInterval time.Duration
	// Members answers the Members RPC. Default nil: the local node alone,
	// alive (a single node without Serf).
	Members func() []*heraldpb.Member
	// Join answers the Join RPC: join the cluster of the Serf addresses and
	// return how many were reached. The RPC validates the addresses first.
	// The hook wraps ErrJoinFailed to say none could be joined. Default
	// nil: Join is Unimplemented, as a node without a cluster has nothing
	// to join with.
	Join func(ctx context.Context, addrs []string) (int, error)
	// ForceLeave answers the ForceLeave RPC: move a failed member to left
	// (prune: and forget it). The hook wraps ErrUnknownMember for a node
	// that is not a member and ErrMemberNotFailed for one that is alive,
	// leaving or this node. Default nil: ForceLeave is Unimplemented, as
	// Join.
	ForceLeave func(ctx context.Context, node string, prune bool) error
	// ACL is the API's access policy (auth.go says what each RPC needs);
	// Server.SetACL replaces it. Default nil: every request is allowed, as
	// an agent without -acl-file.
	ACL *acl.Policy
	// WatchHistory is how many encoded events the server keeps for watchers
	// to read and resume from. Default: the registry's default History
	// (16384), so that a watcher resumes from as far back as the registry
	// keeps.
	WatchHistory int
	// WatchHistoryBytes bounds the encoded events kept for watchers in
	// bytes; the oldest go first. Default: the registry's HistoryBytes
	// (32 MiB), for the same reason (agent -history-bytes).
	WatchHistoryBytes int
	// WatchMaxLag is how many events a watcher may be behind before it gets
	// a fresh snapshot (reset) instead of the deltas; a value above
	// WatchHistory acts as WatchHistory. Default 1024: catching up with
	// more deltas than that costs more than a snapshot.
	WatchMaxLag int
	// MaxWatchServices bounds the services one Watch may name. Default 256,
	// to bound the work and memory one request can ask for.
	MaxWatchServices int
	// MaxWatchesPerStream bounds the watches of one MultiWatch stream.
	// Default 10000: at about 430 bytes a watch, one stream holds at most
	// about 4 MB of the server's memory.
	MaxWatchesPerStream int
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it. Default 5s: half-open connections (a peer that vanished
	// without a TCP reset) end their sessions within Time+Timeout.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for a ping's answer.
	// Default 3s: a live client answers well within it, and a half-open
	// connection ends 8s after it went quiet.
	KeepaliveTimeout time.Duration
	// KeepaliveMinPing is the shortest client ping interval the server
	// tolerates, also without active streams. Default 1s: clients may use
	// short keepalives to notice a dead agent quickly (grpc-go's default,
	// 5m, would close their connections with too_many_pings), while a client
	// that pings many times a second is still cut off.
	KeepaliveMinPing time.Duration
	// Limits bound streams, watches and connections (limits.go). Each zero
	// field takes DefaultLimits' value.
	Limits Limits
}

// DefaultConfig returns the defaults of every field but Registry; set it
// before calling New.
func DefaultConfig() Config {
	return Config{
		Logger:              slog.Default(),
		ProgressInterval:    10 * time.Second,
		WatchHistory:        registry.DefaultConfig().History,
		WatchHistoryBytes:   registry.DefaultConfig().HistoryBytes,
		WatchMaxLag:         1024,
		MaxWatchServices:    256,
		MaxWatchesPerStream: 10000,
		KeepaliveTime:       5 * time.Second,
		KeepaliveTimeout:    3 * time.Second,
		KeepaliveMinPing:    time.Second,
		Limits:              DefaultLimits(),
	}
}

// setDefaults fills the zero fields that have a default from DefaultConfig.
// It rejects nothing; validate does.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	c.Limits.setDefaults()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.ProgressInterval, &d.ProgressInterval},
		{&c.KeepaliveTime, &d.KeepaliveTime},
		{&c.KeepaliveTimeout, &d.KeepaliveTimeout},
		{&c.KeepaliveMinPing, &d.KeepaliveMinPing},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *int }{
		{&c.WatchHistory, &d.WatchHistory},
		{&c.WatchHistoryBytes, &d.WatchHistoryBytes},
		{&c.WatchMaxLag, &d.WatchMaxLag},
		{&c.MaxWatchServices, &d.MaxWatchServices},
		{&c.MaxWatchesPerStream, &d.MaxWatchesPerStream},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
}

// validate rejects invalid values. It changes nothing.
func (c Config) validate() error {
	if c.Registry == nil {
		return errors.New("pushsvc: config: Registry is required")
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"ProgressInterval", c.ProgressInterval},
		{"KeepaliveTime", c.KeepaliveTime},
		{"KeepaliveTimeout", c.KeepaliveTimeout},
		{"KeepaliveMinPing", c.KeepaliveMinPing},
	} {
		if f.v < 0 {
			return fmt.Errorf("pushsvc: config: %s %s must not be negative", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"WatchHistory", c.WatchHistory},
		{"WatchHistoryBytes", c.WatchHistoryBytes},
		{"WatchMaxLag", c.WatchMaxLag},
		{"MaxWatchServices", c.MaxWatchServices},
		{"MaxWatchesPerStream", c.MaxWatchesPerStream},
	} {
		if f.v < 0 {
			return fmt.Errorf("pushsvc: config: %s %d must not be negative", f.name, f.v)
		}
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.ProgressInterval < 10*time.Millisecond {
		return fmt.Errorf("pushsvc: config: ProgressInterval %s is below 10ms", c.ProgressInterval)
	}
	return nil
}
