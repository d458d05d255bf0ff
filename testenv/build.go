// Package testenv is Herald's end-to-end harness: it builds the herald binary
// once per test run and starts real agent processes, each on its own
// loopback address (127.x.y.z) or in its own network namespace behind a
// bridge the harness creates. It can kill, stop, restart, partition and heal
// them, and it holds the fault scenarios that prove the cluster the way an
// operator meets it.
//
// It drives the agents only through their public surfaces: the command line,
// DNS, the gRPC API (pushsvc/heraldpb, pushsvc/client, resolver) and HTTP,
// and the peer protocol (cluster/clusterpb) where it plays a forged peer. It
// must never import cluster, dnsserver or pushsvc (the server) or anything
// under cmd/herald: what the scenarios check is what a user would see.
//
// All traffic stays on loopback or inside the harness's own namespaces and
// bridge. Netns mode needs root; without it those tests skip, and with
// CI=true they fail. Leftovers of a crashed run (namespaces, links and
// /etc/netns entries named after a test process that is gone) are removed
// before the first network of a run is built.
//
// The scenarios (go test ./testenv/...) print every figure they measure as
// a "FIGURE name=value" line. Environment:
//
//	HERALD_BIN              use this prebuilt herald binary instead of building one
//	HERALD_FIGURES_FILE     also append the FIGURE lines to this file
//	HERALD_TESTENV_LOGS=1   print every node's log even when the test passes
//	HERALD_PARTITION_SPLIT  length of the partition scenario's split (default 20s)
//	HERALD_NEMESIS_SEED     replay the nemesis run with this seed (default: random, printed)
//	HERALD_NEMESIS_DURATION length of the nemesis run (default 60s; make nemesis: 10m)
//	HERALD_NEMESIS_HISTORY  write the nemesis run's history and final views to this file
//	CI=true                 a missing tool or missing root fails instead of skipping
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

// builds holds one build per package path for the whole test run.
var builds sync.Map // package path -> *build

// buildDirs holds the temp directories of the builds.
var buildDirs sync.Map // dir -> true

// RemoveBuilds removes every binary built in this run. Call it from TestMain
// after m.Run.
func RemoveBuilds() {
	buildDirs.Range(func(k, _ any) bool {
		os.RemoveAll(k.(string))
		buildDirs.Delete(k)
		return true
	})
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of a herald binary built from this module, building
// it on the first call of the test run. It fails the test when the build fails.
// $HERALD_BIN, when set, names a prebuilt binary to use instead.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HERALD_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return buildPackage(t, "./cmd/herald")
}

// buildPackage builds a main package of this module (a path relative to the
// module root) once per test run, without the race detector, and returns the
// binary's path.
func buildPackage(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		dir, err := os.MkdirTemp("", "herald-testenv-bin-")
		if err != nil {
			b.err = fmt.Errorf("testenv: temp dir for the binary: %w", err)
			return
		}
		// The directory is shared by every test of the run; RemoveBuilds
		// (from TestMain) removes it.
		buildDirs.Store(dir, true)
		out := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("testenv: go build %s: %w\n%s", pkg, err, msg)
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
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
