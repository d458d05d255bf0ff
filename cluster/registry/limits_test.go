package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestMaxInstances: past MaxInstances a new key is refused with ErrLimit
// naming the flag; updates of registered keys still succeed, nothing
// registered is lost, and a deregistration makes room again.
func TestMaxInstances(t *testing.T) {
	r := newReg(t, "n1", func(c *Config) { c.MaxInstances = 3 })
	for i := range 3 {
		mustRegister(t, r, inst("api", fmt.Sprint(i), "10.0.0.1"))
	}
	tests := []struct {
		name    string
		in      *Instance
		wantErr error
	}{
		{"new key over the limit", inst("api", "new", "10.0.0.2"), ErrLimit},
		{"new key of another service", inst("web", "0", "10.0.0.2"), ErrLimit},
		{"update of a registered key", inst("api", "1", "10.0.0.9"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Register(context.Background(), tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Register: got %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "-max-instances") {
				t.Fatalf("the error %q does not name -max-instances", err)
			}
		})
	}
	if n := r.Snapshot().Service("api").Len(); n != 3 {
		t.Fatalf("api holds %d instances after refusals, want 3", n)
	}
	mustDeregister(t, r, Key{Service: "api", ID: "0"})
	mustRegister(t, r, inst("api", "new", "10.0.0.2"))
}

// TestHistoryBytes: the histories drop their oldest events once their
// instances add up to HistoryBytes, however few events they hold; a reader
// from before gets ErrCompacted (a fresh snapshot), one from after gets
// its events.
func TestHistoryBytes(t *testing.T) {
	r := newReg(t, "n1", func(c *Config) { c.HistoryBytes = 64 << 10 })
	big := func(id string) *Instance {
		in := inst("api", id, "10.0.0.1")
		in.Meta = map[string]string{"pad": strings.Repeat("x", 500)}
		for i := range 20 {
			in.Meta[fmt.Sprint("k", i)] = strings.Repeat("y", 500)
		}
		return in
	}
	for i := range 40 { // about 11 KB each: 440 KB in all
		mustRegister(t, r, big(fmt.Sprint(i)))
	}
	if _, err := r.EventsSince(0, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("EventsSince(0): %v, want ErrCompacted", err)
	}
	rev := r.Snapshot().Revision()
	evs, err := r.EventsSince(rev-3, 0)
	if err != nil || len(evs) != 3 {
		t.Fatalf("EventsSince(rev-3): %d events, %v", len(evs), err)
	}
	held := 0
	for _, e := range r.events.buf {
		if e.Instance != nil {
			held += e.Instance.approxSize()
		}
	}
	if held > 64<<10 {
		t.Fatalf("the event history holds %d bytes of instances, over 64 KiB", held)
	}
	if _, err := r.LocalDeltasSince(0, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("LocalDeltasSince(0): %v, want ErrCompacted", err)
	}
}
