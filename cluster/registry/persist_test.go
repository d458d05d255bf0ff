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
