package pushsvc

import (
	"context"

	"github.com/herald-sd/herald/cluster/registry"
)

// Registry is what the server needs of the node's registry: the read side
// (snapshots and the event history Watch streams from) and the local writes
// the API makes. *registry.Registry implements it; the agent passes one.
// It is declared here, by its consumer, so that it lists exactly what
// pushsvc calls and a test or another front door can stand in for it. The
// methods behave as *registry.Registry's do, whose comments say the details.
type Registry interface {
	// NodeName is this node's name: the owner of what it registers.
	NodeName() string
	// Epoch is this run's epoch; session ids carry it.
	Epoch() uint64
	// Snapshot returns the current immutable view. It must be cheap and
	// lock-free: every watcher reads it.
	Snapshot() *registry.Snapshot
	// EventsSince returns up to max events after rev, oldest first, or
	// registry.ErrCompacted when the history no longer reaches back to rev.
	EventsSince(rev uint64, max int) ([]registry.Event, error)

	// Register stores a registration owned by this node and returns it as
	// stored, stamp set.
	Register(ctx context.Context, in *registry.Instance) (*registry.Instance, error)
	// Deregister replaces a registration with a tombstone and returns the
	// tombstone's stamp.
	Deregister(ctx context.Context, key registry.Key) (registry.Stamp, error)
	// SetStatus sets the status of one instance (id set), of this node's
	// instances of service, or of all of them (both empty); it returns how
	// many matched and the highest stamp of the changes.
	SetStatus(ctx context.Context, service, id string, st registry.Status) (int, registry.Stamp, error)
	// Heartbeat renews a TTL registration.
	Heartbeat(ctx context.Context, key registry.Key) error

	// SessionLost signals when session loses instances to newer writes made
	// elsewhere; TakeLost returns them; RemoveSession ends the session and
	// removes its instances.
	SessionLost(session string) <-chan struct{}
	TakeLost(session string) []registry.Key
	RemoveSession(session string) int
}
