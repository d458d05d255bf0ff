package registry

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestSnapshotAfterItsEvents pins the order that readers which follow the
// history rely on (pushsvc's watch feed does): once a snapshot is visible,
// every event up to its revision is in the history. A commit may append its
// events before it publishes its snapshot, never after.
//
// A reader inside the history holds the commit at its append; while the
// commit waits there, its snapshot must not be visible. If the history is
// reorganized, keep a test of this order.
func TestSnapshotAfterItsEvents(t *testing.T) {
	r, err := New(Config{Node: "n1", CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := r.Snapshot()

	r.events.mu.RLock()
	done := make(chan error, 1)
	go func() {
		_, err := r.Register(context.Background(), &Instance{Service: "api", ID: "a1", Address: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 1})
		done <- err
	}()
	// A queued writer makes TryRLock fail: the commit waits to append.
	if _, err := wait.Until(5*time.Second, 0, func() error {
		if r.events.mu.TryRLock() {
			r.events.mu.RUnlock()
			return errors.New("no writer queued")
		}
		return nil
	}); err != nil {
		r.events.mu.RUnlock()
		t.Fatal("the commit never appended to the history")
	}
	published := r.Snapshot() != before
	r.events.mu.RUnlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if published {
		t.Fatal("the snapshot was published before its events were in the history")
	}
	rev := r.Snapshot().Revision()
	if events, err := r.EventsSince(rev-1, 1); err != nil || len(events) != 1 || events[0].Rev != rev {
		t.Fatalf("snapshot at revision %d, history after %d: %v %v", rev, rev-1, events, err)
	}
}
