package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herald-sd/herald/testenv/wait"
)

// Scenario 1: 5 nodes, 1,000 registrations spread over them; every node's
// DNS answers and watch stream agree exactly with the set registered.
func TestConvergence(t *testing.T) {
	const (
		nodes    = 5
		total    = 1000
		services = 20
	)
	c := Start(t, Options{Nodes: nodes})
	var views []*streamView
	for i := range nodes {
		views = append(views, watchNode(t, c, i))
	}
	want := newModel()
	start := time.Now()
	errs := runParallel(total, 16, func(k int) error {
		svc, id := fmt.Sprintf("conv-%02d", k%services), fmt.Sprintf("i-%04d", k)
		a := addrN(k)
		if err := registerPlain(context.Background(), c, k%nodes, svc, id, a, uint32(9000+k%1000)); err != nil {
			return err
		}
		want.add(svc, id, a)
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	registered := time.Since(start)
	d := wait.Eventually(t, 30*time.Second, "every node's DNS and watch stream hold exactly the 1,000", func() error {
		return converged(c, allNodes(nodes), views, want)
	})
	Figure(t, "convergence_1000_register_seconds", registered.Seconds())
	Figure(t, "convergence_1000_after_last_call_seconds", d.Seconds())
	Figure(t, "convergence_1000_total_seconds", time.Since(start).Seconds())
	for _, v := range views {
		if got := v.vanishedKeys(); len(got) > 0 {
			t.Errorf("watch on %s: instances vanished during the registrations: %v", v.node, firstN(got, 5))
		}
	}
}
