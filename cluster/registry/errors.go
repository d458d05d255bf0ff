package registry

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each front door maps them in one place: pushsvc to gRPC
// status codes (pushsvc/errors.go). dnsserver only reads snapshots and
// never sees them.
var (
	// ErrInvalid: a registration or request breaks a rule (InvalidArgument).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: no such service or instance (NotFound).
	ErrNotFound = errors.New("not found")
	// ErrNotOwner: the instance belongs to another node, which alone may
	// change it (FailedPrecondition).
	ErrNotOwner = errors.New("not the owner")
	// ErrCompacted: the history no longer reaches back to the asked revision
	// or sequence; the reader must start again from a snapshot or full state.
	ErrCompacted = errors.New("history compacted")
	// ErrClosed: the registry was closed (Unavailable).
	ErrClosed = errors.New("registry closed")
	// ErrNotDurable: the write is applied in memory but the store failed to
	// write it; it is retried, and the same write must be retried until it
	// succeeds (Unavailable).
	ErrNotDurable = errors.New("write applied in memory but not yet on disk; retry it")
)

// NotFoundError names what was not found. It wraps ErrNotFound.
type NotFoundError struct{ Key Key }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("registry: instance %q of service %q not found", e.Key.ID, e.Key.Service)
}

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// NotOwnerError names the owner of an instance. It wraps ErrNotOwner.
type NotOwnerError struct {
	Key   Key
	Owner string
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("registry: instance %q of service %q is owned by node %q; change it through that node", e.Key.ID, e.Key.Service, e.Owner)
}

// Unwrap makes errors.Is(err, ErrNotOwner) true.
func (e *NotOwnerError) Unwrap() error { return ErrNotOwner }

// GapError reports a delta that does not follow the version a peer holds for
// its owner. The caller repairs it by pulling the owner's full state.
type GapError struct {
	Owner string
	Have  Version
	Got   Version
}

func (e *GapError) Error() string {
	return fmt.Sprintf("registry: gap in deltas of owner %q: have %s, got %s", e.Owner, e.Have, e.Got)
}
