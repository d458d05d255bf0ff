package cluster_test

import (
	"github.com/herald-sd/herald/cluster"
	"github.com/herald-sd/herald/cluster/registry"
)

// The registry the agent passes must satisfy the seam cluster declares.
var _ cluster.Registry = (*registry.Registry)(nil)
