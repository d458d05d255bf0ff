package registry

import (
	"cmp"
	"slices"
	"time"
)

// Bounds of the drain memory (see keepDrain). A session that ends holding
// more draining instances than maxDrainedPerSession has only its most
// recently drained ones remembered; past maxDrained in all, the oldest
// memories are forgotten first. A forgotten drain only means that the
// instance, if its client registers it again within DrainMemory, comes back
// with the status the client sets.
const (
	maxDrained           = 10000
	maxDrainedPerSession = 1000
)

// drainMemory remembers, until a deadline, the keys of session instances that
// were draining when their session ended. It evicts the oldest entries.
// Callers hold r.mu.
type drainMemory struct {
	until map[Key]time.Time
	order []drainEntry // in the order remembered; may hold stale entries
	max   int
}

type drainEntry struct {
	key   Key
	until time.Time
}

func newDrainMemory(max int) *drainMemory {
	return &drainMemory{until: map[Key]time.Time{}, max: max}
}

// remember keeps k until the given time, forgetting the oldest entries past
// the bound.
func (m *drainMemory) remember(k Key, until time.Time) {
	m.until[k] = until
	m.order = append(m.order, drainEntry{k, until})
	for len(m.until) > m.max {
		e := m.order[0]
		m.order = m.order[1:]
		if u, ok := m.until[e.key]; ok && u.Equal(e.until) {
			delete(m.until, e.key)
		}
	}
	if len(m.order) > 2*len(m.until)+64 {
		m.compact()
	}
}

// compact drops the stale entries of the order.
func (m *drainMemory) compact() {
	live := make([]drainEntry, 0, len(m.until))
	for _, e := range m.order {
		if u, ok := m.until[e.key]; ok && u.Equal(e.until) {
			live = append(live, e)
		}
	}
	m.order = live
}

// take reports whether k is remembered at now, and forgets it.
func (m *drainMemory) take(k Key, now time.Time) bool {
	until, ok := m.until[k]
	delete(m.until, k)
	return ok && now.Before(until)
}

func (m *drainMemory) forget(k Key) { delete(m.until, k) }

// expire forgets the entries whose time has passed.
func (m *drainMemory) expire(now time.Time) {
	for k, until := range m.until {
		if !now.Before(until) {
			delete(m.until, k)
		}
	}
	if len(m.order) > 2*len(m.until)+64 {
		m.compact()
	}
}

func (m *drainMemory) len() int { return len(m.until) }

// rememberSession keeps the draining instances of an ended session: at most
// maxDrainedPerSession of them, the most recently written first.
func (m *drainMemory) rememberSession(draining []*Instance, until time.Time) {
	if len(draining) > maxDrainedPerSession {
		slices.SortFunc(draining, func(a, b *Instance) int { return cmp.Compare(b.Stamp, a.Stamp) })
		draining = draining[:maxDrainedPerSession]
	}
	// Oldest first, so that the global bound evicts the oldest.
	slices.SortFunc(draining, func(a, b *Instance) int { return cmp.Compare(a.Stamp, b.Stamp) })
	for _, in := range draining {
		m.remember(in.Key(), until)
	}
}
