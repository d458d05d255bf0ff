package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// crashBound is the removal bound package cluster documents for a kill -9
// with the default failure detection config.
const crashBound = 5 * time.Second

// Scenario 2: kill -9 an owner node. Its instances disappear from every
// other node's DNS and watch streams within the documented bound; nothing
// else is removed. It runs the default failure detection config (no
// -reap-failed, the agent's -sync-interval).
func TestCrash(t *testing.T) {
	const (
		nodes   = 5
		victim  = 2
		perNode = 40
	)
	c := Start(t, Options{Nodes: nodes, SyncInterval: 30 * time.Second})
	want := newModel()
	var victimKeys []string
	errs := runParallel(nodes*perNode, 8, func(k int) error {
		i := k % nodes
		svc, id := fmt.Sprintf("crash-%d", k%4), fmt.Sprintf("n%d-%03d", i, k)
		if err := registerPlain(context.Background(), c, i, svc, id, addrN(k), 9000); err != nil {
			return err
		}
		want.add(svc, id, addrN(k))
		return nil
	})
	for _, err := range errs {
		t.Fatal(err)
	}
	var survivors []int
	var views []*streamView
	for i := range nodes {
		if i != victim {
			survivors = append(survivors, i)
			views = append(views, watchNode(t, c, i))
		}
	}
	wait.Eventually(t, 20*time.Second, "every node holds every registration", func() error {
		return converged(c, allNodes(nodes), views, want)
	})
	after := want.clone()
	for svc, ids := range want.ids() {
		for _, id := range ids {
			if id[:2] == fmt.Sprintf("n%d", victim) {
				after.remove(svc, id)
				victimKeys = append(victimKeys, svc+"/"+id)
			}
		}
	}
	for _, v := range views {
		v.resetVanished()
	}

	// Poll each survivor on its own so every node gets its own removal time.
	type result struct {
		node      string
		dns, push time.Duration
		err       error
	}
	results := make(chan result, len(survivors))
	killed := time.Now()
	c.Kill(victim)
	for k, i := range survivors {
		go func() {
			r := result{node: c.Node(i).Name}
			pushDone := make(chan error, 1)
			go func() {
				var err error
				r.push, err = wait.Until(20*time.Second, measureEvery, func() error { return views[k].diff(after) })
				pushDone <- err
			}()
			var dnsErr error
			r.dns, dnsErr = wait.Until(20*time.Second, measureEvery, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				return dnsDiff(ctx, c, i, after)
			})
			r.err = errors.Join(<-pushDone, dnsErr)
			results <- r
		}()
	}
	var worst time.Duration
	for range survivors {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: the crashed node's instances were not removed: %v", r.node, r.err)
			continue
		}
		t.Logf("%s: removed from the watch stream after %s, from DNS after %s", r.node, r.push.Round(time.Millisecond), r.dns.Round(time.Millisecond))
		worst = max(worst, r.push, r.dns)
	}
	Figure(t, "crash_removal_max_seconds", worst.Seconds())
	Figure(t, "crash_removal_since_kill_seconds", time.Since(killed).Seconds())
	if worst > crashBound {
		t.Errorf("removal took %s, the cluster documents at most %s", worst.Round(time.Millisecond), crashBound)
	}
	victimSet := map[string]bool{}
	for _, k := range victimKeys {
		victimSet[k] = true
	}
	for _, v := range views {
		for _, k := range v.vanishedKeys() {
			if !victimSet[k] {
				t.Errorf("watch on %s: %s of a live node was removed", v.node, k)
			}
		}
	}
	if err := converged(c, survivors, views, after); err != nil {
		t.Errorf("after the crash: %v", err)
	}
}
