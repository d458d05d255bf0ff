package pushsvc

import "github.com/herald-sd/herald/cluster/registry"

// The registry the agent passes must satisfy the seam pushsvc declares.
var _ Registry = (*registry.Registry)(nil)
