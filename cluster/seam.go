package cluster

import "github.com/herald-sd/herald/cluster/registry"

// Registry is the replication side of the node's registry: what the cluster
// needs to stream this node's deltas to peers, apply theirs, repair gaps,
// compare digests, reap owners and publish the members to DNS.
// *registry.Registry implements it; the agent passes one. It is declared
// here, by its consumer, so that it lists exactly what cluster calls. The
// methods behave as *registry.Registry's do, whose comments say the details.
type Registry interface {
	// NodeName is this node's name; Config.NodeName must equal it.
	NodeName() string
	// Epoch is this run's epoch, the first part of every local version.
	Epoch() uint64
	// Snapshot returns the current immutable view (cluster reads its nodes).
	Snapshot() *registry.Snapshot

	// LocalVersion is the version of this node's own set, LocalChanged a
	// channel closed at the next local delta, and LocalDeltasSince up to max
	// local deltas after seq (registry.ErrCompacted when they are gone, and
	// the peer needs OwnerState instead).
	LocalVersion() registry.Version
	LocalChanged() <-chan struct{}
	LocalDeltasSince(seq uint64, max int) ([]registry.Delta, error)

	// Apply applies peers' deltas and returns the owners with a gap.
	Apply(deltas []registry.Delta) []registry.GapError
	// ReplaceOwner installs an owner's full state if it is newer than what
	// this node holds, and reports whether it did.
	ReplaceOwner(st registry.OwnerState) bool
	// OwnerState returns the full state of an owner, local or remote.
	OwnerState(owner string) (registry.OwnerState, bool)
	// Digest returns the version held for every owner.
	Digest() map[string]registry.Version
	// RemoveOwner drops what an owner that failed or left registered, and
	// returns how many instances it removed.
	RemoveOwner(owner string) int

	// SetNode and RemoveNode keep the members served under
	// <node>.node.<domain>.
	SetNode(n registry.Node)
	RemoveNode(name string)
}
