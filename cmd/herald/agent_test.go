package main

import (
	"bytes"
	"strings"
	"testing"
)

// A bad HERALD_CLOCK_OFFSET stops the agent before it starts anything, with
// a usage error that names the variable.
func TestAgentRejectsBadClockOffset(t *testing.T) {
	for _, v := range []string{"30", "soon", "1h-"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv("HERALD_CLOCK_OFFSET", v)
			var stdout, stderr bytes.Buffer
			code := run([]string{"agent", "-dev"}, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), "HERALD_CLOCK_OFFSET") {
				t.Fatalf("exit %d (want %d), stderr %q (want it to name HERALD_CLOCK_OFFSET)", code, exitUsage, stderr.String())
			}
		})
	}
}
