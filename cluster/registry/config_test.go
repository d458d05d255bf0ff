package registry

import (
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	now := time.Unix(1000, 0)
	c := Config{Node: "Node-A", Now: func() time.Time { return now }}
	c.setDefaults()
	if c.Node != "node-a" || c.Epoch != uint64(now.UnixNano()) {
		t.Errorf("node %q epoch %d: want node-a, the clock's time", c.Node, c.Epoch)
	}
	if c.History != d.History || c.DeltaLog != d.DeltaLog || c.CheckInterval != d.CheckInterval ||
		c.DrainMemory != d.DrainMemory || c.TombstoneTTL != d.TombstoneTTL || c.MaxTombstones != d.MaxTombstones {
		t.Errorf("zero fields not filled from DefaultConfig: %+v", c)
	}

	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no node", func(c *Config) { c.Node = "" }, "node name"},
		{"bad node", func(c *Config) { c.Node = "a.b" }, "node name"},
		{"negative history", func(c *Config) { c.History = -1 }, "History"},
		{"negative delta log", func(c *Config) { c.DeltaLog = -1 }, "DeltaLog"},
		{"negative max tombstones", func(c *Config) { c.MaxTombstones = -1 }, "MaxTombstones"},
		{"negative check interval", func(c *Config) { c.CheckInterval = -time.Second }, "CheckInterval"},
		{"negative drain memory", func(c *Config) { c.DrainMemory = -time.Second }, "DrainMemory"},
		{"negative tombstone ttl", func(c *Config) { c.TombstoneTTL = -time.Second }, "TombstoneTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Node = "n1"
			tc.mod(&c)
			r, err := New(c)
			if err == nil {
				r.Close()
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}
