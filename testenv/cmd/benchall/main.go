// Command benchall runs Herald's end-to-end load benchmarks and prints one
// table per benchmark with the figures the issues ask for. `make bench` runs
// it after the Go benchmarks. Every load loop is bounded in count and time,
// and every server it starts listens on loopback only.
//
// Each benchmark lives in its own file and adds itself to the registry below
// from an init function. Run a subset with -run REGEXP.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime/pprof"
	"sort"
	"time"
)

// bench is one end-to-end benchmark. Run prints its own table to stdout and
// returns an error if it could not measure.
type bench struct {
	name string
	run  func(ctx context.Context, env *benchEnv) error
}

// benchEnv is what every benchmark gets: the built herald binary and a
// scratch directory.
type benchEnv struct {
	HeraldBin string
	WorkDir   string
}

var benches []bench

func register(name string, run func(ctx context.Context, env *benchEnv) error) {
	benches = append(benches, bench{name: name, run: run})
}

func main() {
	runRe := flag.String("run", ".", "run only benchmarks whose name matches this regexp")
	bin := flag.String("herald", "bin/herald", "path to the built herald binary")
	timeout := flag.Duration("timeout", 45*time.Minute, "overall time limit for every benchmark together")
	cpuprofile := flag.String("cpuprofile", "", "write the benchmark client's CPU profile to this file (the push benchmarks' server: HERALD_BENCH_PUSH_CPUPROFILE)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchall: -cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	re, err := regexp.Compile(*runRe)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchall: -run:", err)
		os.Exit(2)
	}
	work, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchall:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sort.Slice(benches, func(i, j int) bool { return benches[i].name < benches[j].name })
	failed := false
	for _, b := range benches {
		if !re.MatchString(b.name) {
			continue
		}
		fmt.Printf("\n=== %s\n", b.name)
		if err := b.run(ctx, &benchEnv{HeraldBin: *bin, WorkDir: work}); err != nil {
			fmt.Fprintf(os.Stderr, "benchall: %s: %v\n", b.name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
