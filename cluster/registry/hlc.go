package registry

import (
	"fmt"
	"sync"
	"time"
)

// Stamp is a hybrid logical clock value: the physical time in milliseconds
// since the Unix epoch in the high 48 bits and a logical counter in the low
// 16. Stamps of one clock never go backwards, and a clock that has seen a
// stamp only issues higher ones, so a write made after seeing another
// write of the same key, on any node, always carries the higher stamp.
//
// Of all the writes of one key (registrations, status changes and
// deregistrations, made through any node), the one with the highest stamp
// wins everywhere; equal stamps are broken by the owner's name.
type Stamp uint64

const logicalBits = 16

// StampAt returns the lowest stamp of physical time t (0 before 1970).
func StampAt(t time.Time) Stamp {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return Stamp(uint64(ms) << logicalBits)
}

// Time returns the physical part of the stamp.
func (s Stamp) Time() time.Time { return time.UnixMilli(int64(s >> logicalBits)) }

// Logical returns the logical counter.
func (s Stamp) Logical() uint16 { return uint16(s) }

func (s Stamp) String() string {
	return fmt.Sprintf("%s+%d", s.Time().UTC().Format("2006-01-02T15:04:05.000Z"), s.Logical())
}

// Clock is a hybrid logical clock. It is safe for concurrent use.
type Clock struct {
	now  func() time.Time
	mu   sync.Mutex
	last Stamp
}

// NewClock returns a clock that reads physical time from now.
func NewClock(now func() time.Time) *Clock { return &Clock{now: now} }

// Next returns a stamp higher than every stamp the clock issued or observed.
// At the top of the range (only a broken or hostile peer's stamp gets it
// there) it keeps returning the highest stamp rather than wrap to 0, which
// would lose to every copy of a key and send the clock backwards.
func (c *Clock) Next() Stamp {
	p := StampAt(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if p > c.last {
		c.last = p
	} else if c.last < ^Stamp(0) {
		c.last++
	}
	return c.last
}

// Observe makes every later stamp higher than s.
func (c *Clock) Observe(s Stamp) {
	c.mu.Lock()
	if s > c.last {
		c.last = s
	}
	c.mu.Unlock()
}

// Last returns the highest stamp issued or observed.
func (c *Clock) Last() Stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Tombstone is a deregistered key: it hides every copy of the key with a
// lower stamp, on every node, until it expires (Config.TombstoneTTL).
type Tombstone struct {
	Key   Key
	Stamp Stamp
}
