package registry

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	c := NewClock(clk.Now)
	a := c.Next()
	if a != StampAt(time.Unix(1000, 0)) || a.Logical() != 0 {
		t.Fatalf("first stamp %v", a)
	}
	b := c.Next() // same millisecond: the logical counter moves
	if b != a+1 || b.Logical() != 1 {
		t.Fatalf("second stamp %v", b)
	}
	clk.Add(-30 * time.Second) // the clock steps back: stamps still rise
	if s := c.Next(); s <= b {
		t.Fatalf("stamp after a step back %v <= %v", s, b)
	}
	far := StampAt(time.Unix(5000, 0))
	c.Observe(far) // a peer's later write: every next stamp is above it
	if s := c.Next(); s <= far || s.Time() != far.Time() {
		t.Fatalf("stamp after observing %v: %v", far, s)
	}
	c.Observe(a) // observing an older stamp changes nothing
	if c.Last() <= far {
		t.Fatal("observing an older stamp moved the clock back")
	}
	clk.Add(2 * time.Hour) // physical time overtakes the logical part again
	if s := c.Next(); s != StampAt(clk.Now()) {
		t.Fatalf("stamp once physical time is ahead: %v", s)
	}
	if StampAt(time.Unix(-1, 0)) != 0 {
		t.Fatal("a time before 1970 must give stamp 0")
	}
}
