package registry

import (
	"fmt"
	"strings"
	"time"
)

// Config configures a Registry.
//
// The config convention, the same in every Herald server package (dnsserver,
// pushsvc, cluster, cluster/registry and the agent):
//   - DefaultConfig returns every default, and each field's comment gives its
//     default and the reason for it. Start from DefaultConfig and override.
//   - New takes the config by value and, once, fills each zero field that
//     has a default with DefaultConfig's value (setDefaults, which rejects
//     nothing). Here every field but Node and Store has one, so the zero
//     Config with Node set is the default registry.
//   - New then validates (validate, which changes nothing) and fails on the
//     first invalid field.
//   - The config may not change after New.
type Config struct {
	// Node is the name of this node, the owner of local registrations: a DNS
	// label, which New puts in lower case. Required: it has no default.
	Node string
	// Epoch of this run. Default 0: New takes the clock's time in
	// nanoseconds (raised above the stored one with an EpochStore), so that
	// it rises across restarts.
	Epoch uint64
	// History is how many view events are kept for watchers to resume from.
	// Default 16384: a watcher that reconnects resumes with deltas instead
	// of a whole snapshot, even after a burst of thousands of changes (a
	// deploy).
	History int
	// DeltaLog is how many local deltas are kept for peers to catch up from
	// before they need full state. Default 16384: a peer that missed a
	// burst catches up with deltas instead of this owner's whole set.
	DeltaLog int
	// CheckInterval is how often TTL checks are evaluated. Default 100ms: a
	// missed heartbeat turns the instance critical within 100ms of its
	// deadline, for one pass over the TTL instances per tick.
	CheckInterval time.Duration
	// DrainMemory is how long a session instance that was draining when its
	// session ended stays draining if the same key registers again through
	// a session. Default 30s: longer than a client's reconnect, short
	// enough that a crashed instance that drained itself is soon served again.
	DrainMemory time.Duration
	// TombstoneTTL is how long a deregistered key's tombstone is kept to beat
	// older copies still travelling: on a partitioned side, in a peer's
	// retry, or in a data dir restored after a while. Default 72h: long
	// enough for a partition or a restore over a long weekend.
	TombstoneTTL time.Duration
	// MaxTombstones bounds this node's own tombstones; beyond it the oldest
	// are dropped first. Default 100000 (about 10 MB), so that a flood of
	// deregistrations cannot grow memory without bound.
	MaxTombstones int
	// MaxInstances bounds the instances this node owns. A registration of
	// a new key beyond it fails with ErrLimit; updates of registered keys
	// and everything already registered are kept. Default 100000: about
	// 30 MB of typical instances, replicated to every node (agent
	// -max-instances).
	MaxInstances int
	// HistoryBytes bounds each of the two histories (History, DeltaLog) in
	// bytes, as Instance sizes add up; the oldest events go first. Default
	// 32 MiB: 16384 events of typical instances (about 300 bytes) take
	// 5 MB, while churning maximum-size instances (about 20 KB) would
	// otherwise pin 330 MB in each (agent -history-bytes).
	HistoryBytes int
	// Now is the clock. Default time.Now; tests inject a fake one.
	Now func() time.Time
	// Store persists plain local registrations. Default nil: memory only
	// (the agent passes one with -data-dir).
	Store Store
}

// DefaultConfig returns the defaults of every field but Node (required)
// and Epoch (taken from the clock in New).
func DefaultConfig() Config {
	return Config{
		History:       16384,
		DeltaLog:      16384,
		CheckInterval: 100 * time.Millisecond,
		DrainMemory:   30 * time.Second,
		TombstoneTTL:  72 * time.Hour,
		MaxTombstones: 100000,
		MaxInstances:  100000,
		HistoryBytes:  32 << 20,
		Now:           time.Now,
	}
}

// setDefaults fills the zero fields that have a default from DefaultConfig,
// takes the epoch from the clock, and puts Node in lower case. It rejects
// nothing; validate does.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	c.Node = strings.ToLower(c.Node)
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Epoch == 0 {
		c.Epoch = uint64(c.Now().UnixNano())
	}
	if c.History == 0 {
		c.History = d.History
	}
	if c.DeltaLog == 0 {
		c.DeltaLog = d.DeltaLog
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = d.CheckInterval
	}
	if c.DrainMemory == 0 {
		c.DrainMemory = d.DrainMemory
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.MaxTombstones == 0 {
		c.MaxTombstones = d.MaxTombstones
	}
	if c.MaxInstances == 0 {
		c.MaxInstances = d.MaxInstances
	}
	if c.HistoryBytes == 0 {
		c.HistoryBytes = d.HistoryBytes
	}
}

// validate rejects invalid values. It changes nothing.
func (c Config) validate() error {
	if !ValidName(c.Node) {
		return fmt.Errorf("registry: node name %q must be a DNS label (letters, digits, inner hyphens, at most 63 bytes)", c.Node)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"History", int64(c.History)},
		{"DeltaLog", int64(c.DeltaLog)},
		{"MaxTombstones", int64(c.MaxTombstones)},
		{"MaxInstances", int64(c.MaxInstances)},
		{"HistoryBytes", int64(c.HistoryBytes)},
	} {
		if f.v < 0 {
			return fmt.Errorf("registry: config: %s %d must not be negative", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"CheckInterval", c.CheckInterval},
		{"DrainMemory", c.DrainMemory},
		{"TombstoneTTL", c.TombstoneTTL},
	} {
		if f.v < 0 {
			return fmt.Errorf("registry: config: %s %s must not be negative", f.name, f.v)
		}
	}
	return nil
}
