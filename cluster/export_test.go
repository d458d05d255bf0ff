package cluster

import "github.com/herald-sd/herald/cluster/registry"

// SetDropDelta sets the test hook that drops deltas on their way to a peer:
// when drop returns true, the delta is not sent (the sender moves past it,
// as if it was lost).
func SetDropDelta(c *Config, drop func(peer string, d registry.Delta) bool) { c.dropDelta = drop }
