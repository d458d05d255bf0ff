// Package testenv is Herald's end-to-end harness: it builds the herald binary
// once per test run and starts real agent processes, each on its own
// loopback address (127.x.y.z) or in its own network namespace behind a
// bridge the harness creates. It can kill, stop, restart, partition and heal
// them, and it holds the fault scenarios that prove the cluster the way an
// operator meets it.
//
// It drives the agents only through their public surfaces: the command line,
// DNS, the gRPC API (pushsvc/heraldpb, pushsvc/client, resolver) and HTTP. It
// must never import cluster, dnsserver or pushsvc (the server) or anything
// under cmd/herald: what the scenarios check is what a user would see.
//
// All traffic stays on loopback or inside the harness's own namespaces and
// bridge. Netns mode needs root; without it those tests skip, and with
// CI=true they fail.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of a herald binary built from this module, building
// it on the first call of the test run. It fails the test when the build fails.
// $HERALD_BIN, when set, names a prebuilt binary to use instead.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("HERALD_BIN"); p != "" {
			buildPath, buildErr = filepath.Abs(p)
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "herald-testenv-bin-")
		if err != nil {
			buildErr = fmt.Errorf("testenv: temp dir for the binary: %w", err)
			return
		}
		// The directory is shared by every test of the run; it is small and
		// lives in the system temp dir, so it is left for the OS to clean.
		out := filepath.Join(dir, "herald")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/herald")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testenv: go build ./cmd/herald: %w\n%s", err, b)
			return
		}
		buildPath = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// moduleRoot finds the directory holding go.mod, upwards from the working
// directory (go test runs in the package directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: working directory: %w", err)
	}
	for range 32 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("testenv: go.mod not found above the working directory")
}
