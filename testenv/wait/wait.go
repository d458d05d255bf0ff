// Package wait is how Herald's tests wait: poll a condition until it holds or
// a deadline passes, never sleep a fixed time and hope. It owns the one
// poll-until helper of the project, Eventually, and its test-free core,
// Until, for loops that decide themselves what a timeout means (the
// end-to-end measurements).
//
// It sits under testenv, not under an internal directory, because Go's
// internal rule would hide it from the tests of the packages outside
// testenv; it is a leaf that any package's tests may import. It imports
// only the standard library and must never import Herald's packages, so
// that importing it never creates a cycle. Non-test code of the server
// must not import it.
package wait

import (
	"errors"
	"testing"
	"time"
)

// Condition is what Eventually polls: a func() bool, or a func() error
// whose last error goes into the failure message.
type Condition interface {
	func() bool | func() error
}

// Eventually polls cond until it holds (true, or a nil error) and returns
// how long that took. When timeout passes first it fails t with what, and
// with cond's last error for a func() error. Call it from the test's
// goroutine: it calls t.Fatalf.
//
// The poll interval starts at 1ms and doubles up to timeout/100 (at most
// 100ms): a short wait notices the change at once, and a long one costs
// about a hundred polls, not thousands.
func Eventually[C Condition](t testing.TB, timeout time.Duration, what string, cond C) time.Duration {
	t.Helper()
	d, err := Until(timeout, 0, errFunc(cond))
	switch {
	case errors.Is(err, errNotYet):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	case err != nil:
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
	return d
}

// Until polls cond until it returns nil or timeout passes, and returns how
// long it polled and cond's last error (nil when cond held). With every > 0
// it polls at that fixed interval, for measurements that need an even
// resolution; with every 0 it backs off as Eventually does. The last poll
// is just after the deadline, so a condition that holds in time is seen.
func Until(timeout, every time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	interval, limit := every, every
	if every <= 0 {
		interval, limit = time.Millisecond, min(max(timeout/100, time.Millisecond), 100*time.Millisecond)
	}
	for {
		polled := time.Now()
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		now := time.Now()
		if now.After(deadline) {
			return now.Sub(start), err
		}
		// The next poll starts an interval after this one did (as a ticker
		// would), and no later than just after the deadline.
		time.Sleep(min(polled.Add(interval).Sub(now), time.Until(deadline)+time.Millisecond))
		interval = min(interval*2, limit)
	}
}

// errNotYet is the error of a func() bool that does not hold yet.
var errNotYet = errors.New("wait: condition not true yet")

func errFunc[C Condition](cond C) func() error {
	switch c := any(cond).(type) {
	case func() error:
		return c
	case func() bool:
		return func() error {
			if c() {
				return nil
			}
			return errNotYet
		}
	}
	panic("wait: unreachable: Condition is func() bool or func() error")
}
