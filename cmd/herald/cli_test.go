package main

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/cluster/registry"
)

// A write the agent applied but could not store comes back Unavailable, so
// that clients retry it; the CLI must not say the agent was unreachable.
func TestCallErrSaysTheDiskFailedNotTheAgent(t *testing.T) {
	cf := &clientFlags{addr: "127.0.0.1:8700"}
	notDurable := fmt.Errorf("registry: %w: write registrations.db: no space left on device", registry.ErrNotDurable)
	got := cf.callErr(status.Error(codes.Unavailable, notDurable.Error())).Error()
	if strings.Contains(got, "cannot reach") || !strings.Contains(got, "no space left on device") {
		t.Fatalf("callErr = %q", got)
	}
	if got := cf.callErr(status.Error(codes.Unavailable, "connection error")).Error(); !strings.Contains(got, "cannot reach") {
		t.Fatalf("callErr of a transport failure = %q", got)
	}
}
