package dnsserver

import "github.com/herald-sd/herald/cluster/registry"

// Source gives the server the registry view to answer from. A
// *registry.Registry satisfies it. Snapshot must be cheap and lock-free: it is
// called once per query.
type Source interface {
	Snapshot() *registry.Snapshot
}
