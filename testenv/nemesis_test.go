package testenv

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// TestNemesis is issue #13's Jepsen-style run: "one key, one truth; nothing
// acknowledged is lost". Five agents with -data-dir, in network namespaces;
// clients register, deregister, drain and undrain 12 keys through random
// nodes while a seeded schedule kills, stops, partitions and clock-steps
// them. At the end every node is back and healed, the nodes must converge
// to the same list, and every key must be what its acknowledged write with
// the highest stamp made it (nemesis_check.go).
//
// HERALD_NEMESIS_SEED replays a schedule; HERALD_NEMESIS_DURATION sets the
// length (default 60s; `make nemesis` runs 10m); HERALD_NEMESIS_HISTORY
// names a file to write the whole history and the final views to.
func TestNemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("the nemesis runs for a minute or more")
	}
	cfg := nemConfig{Seed: rand.Uint64() >> 1, Duration: 60 * time.Second}
	if v := os.Getenv("HERALD_NEMESIS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("HERALD_NEMESIS_SEED=%q: want an unsigned integer", v)
		}
		cfg.Seed = s
	}
	if v := os.Getenv("HERALD_NEMESIS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 2*time.Hour {
			t.Fatalf("HERALD_NEMESIS_DURATION=%q: want a duration from 10s to 2h", v)
		}
		cfg.Duration = d
	}
	cfg.setDefaults()
	replay := fmt.Sprintf("HERALD_NEMESIS_SEED=%d HERALD_NEMESIS_DURATION=%s", cfg.Seed, cfg.Duration)
	t.Logf("nemesis: %s", replay)
	fmt.Printf("nemesis: %s\n", replay)

	c := Start(t, Options{
		Nodes:   5,
		Mode:    Netns,
		DataDir: true,
		// Short failure detection, so that a killed node's instances are
		// reaped and a partition splits the cluster well within a fault's
		// hold; a short drain grace keeps SIGTERM quick.
		ReapFailed: 500 * time.Millisecond,
		Args:       []string{"-probe-interval", "250ms", "-probe-timeout", "150ms", "-suspicion-mult", "3", "-drain-grace", "250ms"},
	})
	w, err := newNemWorkload(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	schedule := nemSchedule(cfg.Seed, c.Len(), cfg.Duration)

	ctx, stop := context.WithCancel(context.Background())
	waitClients := w.run(ctx)
	stopped := false
	stopClients := func() {
		if !stopped {
			stopped = true
			stop()
			waitClients()
		}
	}
	t.Cleanup(stopClients) // before the cluster's cleanup, if a fault fails the test
	end := w.start.Add(cfg.Duration)
	faults := map[nemFaultKind]int{}
	for _, f := range schedule {
		if time.Until(end) < f.Gap+f.Hold+nemFaultCost {
			break
		}
		<-time.After(f.Gap) // the schedule's timeline
		t.Logf("nemesis: +%.1fs %s", time.Since(w.start).Seconds(), f)
		nemInject(t, c, w, f)
		faults[f.Kind]++
		if f.Kind == nemClock && f.Offset != 0 {
			checkClockOffset(t, c.Node(f.Nodes[0]), f.Offset)
		}
	}
	<-time.After(time.Until(end))
	stopClients()

	// Every fault repaired itself: all nodes run and no partition is left.
	if _, err := wait.Until(30*time.Second, 0, c.membersErr); err != nil {
		t.Errorf("membership 30s after the run: %v", err)
	}
	var views nemViews
	conv, divergence := wait.Until(30*time.Second, 0, func() error {
		v, err := w.views()
		if err != nil {
			return err
		}
		views = v
		return nemDiverged(v)
	})
	if views == nil {
		t.Fatalf("could not list %s on every node: %v", nemService, divergence)
	}
	ops := w.history()
	violations, dumps := nemCheck(ops, w.ids, views)
	if divergence != nil {
		violations = append(violations, nemViolation{"", fmt.Sprintf("the nodes did not converge within 30s after the run: %v", divergence)})
	}
	var acked, failed, unknown, notSent int
	for _, o := range ops {
		switch o.Outcome {
		case nemOK:
			acked++
		case nemFailed:
			failed++
			if o.Err == "node down: not sent" {
				notSent++
			}
		case nemUnknown:
			unknown++
		}
	}
	line := fmt.Sprintf("FIGURE nemesis: seed=%d duration=%s ops=%d acked=%d failed=%d indeterminate=%d faults={kill:%d term:%d partition:%d clock:%d} violations=%d",
		cfg.Seed, cfg.Duration, len(ops), acked, failed, unknown,
		faults[nemKill], faults[nemTerm], faults[nemPartition], faults[nemClock], len(violations))
	t.Log(line)
	fmt.Println(line)
	t.Logf("nemesis: %d of the failed ops were not sent (their node was down); converged %.1fs after the run", notSent, conv.Seconds())
	if p := os.Getenv("HERALD_NEMESIS_HISTORY"); p != "" {
		if err := writeNemHistory(p, replay, ops, views); err != nil {
			t.Error(err)
		}
	}
	for _, v := range violations {
		t.Errorf("nemesis violation: %s", v)
	}
	for _, id := range slices.Sorted(maps.Keys(dumps)) {
		t.Logf("history of %s/%s:%s", nemService, id, dumps[id])
	}
	if len(violations) > 0 {
		t.Logf("replay: %s make nemesis (or go test -run TestNemesis -v ./testenv/)", replay)
	}
}

// checkClockOffset fails the test unless the node's latest run logged the
// clock offset it was given, so that a clock step never silently does
// nothing.
func checkClockOffset(t *testing.T, n *Node, off time.Duration) {
	t.Helper()
	log := tailFile(n.LogPath, 1<<20)
	if i := strings.LastIndex(log, "=== testenv"); i >= 0 {
		log = log[i:]
	}
	if !strings.Contains(log, "clock_offset="+off.String()) {
		t.Errorf("%s was restarted with HERALD_CLOCK_OFFSET=%s but did not log it", n.Name, off)
	}
}

// writeNemHistory writes every op and every node's final view to path.
func writeNemHistory(path, replay string, ops []nemOp, views nemViews) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# nemesis history: %s\n", replay)
	for _, o := range ops {
		fmt.Fprintf(&b, "%s %s\n", o.ID, o)
	}
	for _, n := range slices.Sorted(maps.Keys(views)) {
		for _, id := range slices.Sorted(maps.Keys(views[n])) {
			fmt.Fprintf(&b, "final %s %s %s\n", n, id, views[n][id])
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("testenv: nemesis history: %w", err)
	}
	return nil
}

// The schedule is a function of the seed alone, and the part of it that
// surely fits in a 60s run has every kind of fault, never more than two
// nodes down, clock offsets of at most 30s, and partitions of two nodes
// against three.
func TestNemesisSchedule(t *testing.T) {
	for seed := range uint64(50) {
		s := nemSchedule(seed, 5, 60*time.Second)
		if !slices.EqualFunc(s, nemSchedule(seed, 5, 60*time.Second), func(a, b nemFault) bool { return a.String() == b.String() && a.Gap == b.Gap }) {
			t.Fatalf("seed %d: two schedules differ", seed)
		}
		kinds := map[nemFaultKind]int{}
		var total, sure time.Duration // sure: with nemFaultCost, as the run counts
		for _, f := range s {
			total += f.Gap + f.Hold
			if sure += f.Gap + f.Hold + nemFaultCost; sure <= 60*time.Second {
				kinds[f.Kind]++
			}
			switch {
			case len(f.Nodes) == 0 || len(f.Nodes) > 2:
				t.Errorf("seed %d: %s hits %d nodes", seed, f, len(f.Nodes))
			case f.Kind == nemPartition && (len(f.Nodes) != 2 || f.Nodes[0] == f.Nodes[1]):
				t.Errorf("seed %d: %s is not a 2/3 split", seed, f)
			case f.Offset < -30*time.Second || f.Offset > 30*time.Second:
				t.Errorf("seed %d: %s steps too far", seed, f)
			}
		}
		if len(kinds) != int(nemFaultKinds) {
			t.Errorf("seed %d: the first faults of a 60s schedule are only %v", seed, kinds)
		}
		if total > 60*time.Second {
			t.Errorf("seed %d: the schedule needs %s, more than the run", seed, total)
		}
	}
}
