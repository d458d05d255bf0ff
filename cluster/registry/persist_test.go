package registry

import (
	"context"
	"errors"
	"testing"
)

// Registering the same instance again after its commit failed is not
// acknowledged until a commit of it succeeds: a client that retries while
// the disk is full gets the error every time.
func TestRetryOfAFailedRegistrationWaitsForTheStore(t *testing.T) {
	ctx := context.Background()
	st := &memStore{data: map[Key]*Instance{}}
	r := newReg(t, "n1", func(c *Config) { c.Store = st })
	setFail := func(err error) { st.mu.Lock(); st.fail = err; st.mu.Unlock() }
	setFail(errors.New("disk full"))
	for try := range 3 {
		if _, err := r.Register(ctx, inst("api", "a1", "10.0.0.1")); err == nil {
			t.Fatalf("try %d was acknowledged while the store fails", try+1)
		}
	}
	setFail(nil)
	if _, err := r.Register(ctx, inst("api", "a1", "10.0.0.1")); err != nil {
		t.Fatalf("after the store recovered: %v", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.data[Key{"api", "a1"}] == nil {
		t.Fatal("acknowledged but not stored")
	}
}

// A writer whose commit succeeded is acknowledged even if it reads the
// outcome only after a later commit (of other keys) failed: otherwise a
// durable deregistration is reported as not durable, and its retry finds
// nothing to deregister (NotFound) instead of succeeding.
func TestALaterFailedCommitDoesNotFailAnEarlierDurableWrite(t *testing.T) {
	st := &memStore{data: map[Key]*Instance{}}
	r := newReg(t, "n1", func(c *Config) { c.Store = st })
	setFail := func(err error) { st.mu.Lock(); st.fail = err; st.mu.Unlock() }
	// The writer of k1 is descheduled between its commit and its wait.
	k1 := r.persist.mark([]Key{{"api", "k1"}})
	if err := r.waitDurable(context.Background(), r.persist.mark([]Key{{"api", "sync"}})); err != nil {
		t.Fatal(err)
	}
	setFail(errors.New("disk full"))
	if err := r.waitDurable(context.Background(), r.persist.mark([]Key{{"api", "k2"}})); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("the failing commit = %v", err)
	}
	if err := r.waitDurable(context.Background(), k1); err != nil {
		t.Fatalf("k1's commit succeeded before the failure, yet its writer hears: %v", err)
	}
}
