package pushsvc

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

func TestConfig(t *testing.T) {
	reg, err := registry.New(registry.Config{Node: "node-a", CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	c := Config{Registry: reg}
	c.setDefaults()
	d := DefaultConfig()
	d.Registry = reg
	if c.Logger == nil || c.ProgressInterval != d.ProgressInterval || c.WatchHistory != d.WatchHistory ||
		c.WatchMaxLag != d.WatchMaxLag || c.MaxWatchServices != d.MaxWatchServices ||
		c.MaxWatchesPerStream != d.MaxWatchesPerStream || c.KeepaliveTime != d.KeepaliveTime ||
		c.KeepaliveTimeout != d.KeepaliveTimeout || c.KeepaliveMinPing != d.KeepaliveMinPing {
		t.Errorf("zero fields not filled from DefaultConfig: %+v", c)
	}

	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"lag above history", func(c *Config) { c.WatchHistory, c.WatchMaxLag = 16, 64 }, ""},
		{"no registry", func(c *Config) { c.Registry = nil }, "Registry is required"},
		{"negative history", func(c *Config) { c.WatchHistory = -1 }, "WatchHistory"},
		{"negative lag", func(c *Config) { c.WatchMaxLag = -1 }, "WatchMaxLag"},
		{"negative keepalive", func(c *Config) { c.KeepaliveTime = -time.Second }, "KeepaliveTime"},
		{"negative progress", func(c *Config) { c.ProgressInterval = -time.Second }, "ProgressInterval"},
		{"short progress", func(c *Config) { c.ProgressInterval = time.Millisecond }, "below 10ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := d
			tc.mod(&c)
			s, err := New(c)
			if err == nil {
				s.Close()
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}
