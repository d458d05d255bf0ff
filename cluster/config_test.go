package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/cluster/registry"
)

func TestConfigDefaults(t *testing.T) {
	reg, err := registry.New(registry.Config{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	c := Config{Registry: reg}
	c.setDefaults()
	d := DefaultConfig(reg)
	if c.NodeName != "n1" || !sameConfig(c, d) {
		t.Errorf("zero fields not filled from DefaultConfig:\n got %+v\nwant %+v", c, d)
	}
	if _, err := DefaultConfig(reg).validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
	if _, err := FastConfig(reg).validate(); err != nil {
		t.Errorf("FastConfig: %v", err)
	}
	if got := DefaultConfig(nil); got.NodeName != "" || got.ReapFailed != d.ReapFailed {
		t.Errorf("DefaultConfig(nil): %+v", got)
	}

	for name, mod := range map[string]func(*Config){
		"sync interval": func(c *Config) { c.SyncInterval = -time.Second },
		"reap failed":   func(c *Config) { c.ReapFailed = -time.Second },
		"max batch":     func(c *Config) { c.MaxBatch = -1 },
	} {
		c := DefaultConfig(reg)
		mod(&c)
		c.setDefaults()
		if _, err := c.validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("negative %s: %v, want an error about it", name, err)
		}
	}
}

// sameConfig compares the fields that setDefaults fills.
func sameConfig(a, b Config) bool {
	return a.NodeName == b.NodeName && a.BindAddr == b.BindAddr && a.JoinTimeout == b.JoinTimeout &&
		a.RetryJoinMaxWait == b.RetryJoinMaxWait && a.SyncInterval == b.SyncInterval &&
		a.ReapFailed == b.ReapFailed && a.ProbeInterval == b.ProbeInterval &&
		a.ProbeTimeout == b.ProbeTimeout && a.SuspicionMult == b.SuspicionMult &&
		a.SuspicionMaxTimeoutMult == b.SuspicionMaxTimeoutMult && a.GossipInterval == b.GossipInterval &&
		a.ReconnectInterval == b.ReconnectInterval && a.PushPullInterval == b.PushPullInterval &&
		a.MaxBatch == b.MaxBatch && a.Logger == b.Logger
}
