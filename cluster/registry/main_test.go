package registry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// registry's TTL loop and persister must stop at Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
