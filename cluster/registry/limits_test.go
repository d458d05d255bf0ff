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
	if n := len(r.Snapshot().Service("api").Instances); n != 3 {
		t.Fatalf("api holds %d instances after refusals, want 3", n)
	}
	mustDeregister(t, r, Key{Service: "api", ID: "0"})
	mustRegister(t, r, inst("api", "new", "10.0.0.2"))
}
