package cluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// goroutine the cluster starts must stop at Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
