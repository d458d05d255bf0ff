package testenv

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/herald-sd/herald/pushsvc/client"
	"github.com/herald-sd/herald/testenv/wait"
)

var epochRE = regexp.MustCompile(`agent ready.* epoch=(\S+)`)

// epochs returns the epoch each run of node i logged when it became ready.
func epochs(t *testing.T, c *Cluster, i int) []string {
	t.Helper()
	b, err := os.ReadFile(c.Node(i).LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range epochRE.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// Scenario 4: a killed node comes back with the same -data-dir and a new
// epoch, and resyncs. Its plain registrations come back from disk, its
// session registrations when their clients re-register, and nothing it had
// removed comes back anywhere.
func TestRestart(t *testing.T) {
	const victim = 1
	c := Start(t, Options{Nodes: 3, DataDir: true})
	ctx := context.Background()
	var views []*streamView
	for i := range c.Len() {
		views = append(views, watchNode(t, c, i))
	}
	want := newModel()
	var removed []string
	for k := range 10 {
		id := fmt.Sprintf("p-%d", k)
		if err := registerPlain(ctx, c, victim, "rs-plain", id, addrN(k), 9000); err != nil {
			t.Fatal(err)
		}
		want.add("rs-plain", id, addrN(k))
	}
	for _, id := range []string{"p-8", "p-9"} { // removed before the crash: must stay gone
		if err := deregister(ctx, c, victim, "rs-plain", id); err != nil {
			t.Fatal(err)
		}
		want.remove("rs-plain", id)
		removed = append(removed, "rs-plain/"+id)
	}
	for k := range 5 {
		id := fmt.Sprintf("o-%d", k)
		if err := registerPlain(ctx, c, 0, "rs-other", id, addrN(100+k), 9000); err != nil {
			t.Fatal(err)
		}
		want.add("rs-other", id, addrN(100+k))
	}
	// Session registrations whose client talks only to the victim, so they
	// come back on it when it is back.
	sess := c.Client([]int{victim}, client.WithBackoff(client.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: 0.2}))
	var regs []*client.Registration
	for k := range 5 {
		id := fmt.Sprintf("s-%d", k)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := sess.Register(rctx, client.Instance{Service: "rs-session", ID: id, Address: addrN(200 + k), Port: 9000})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
		want.add("rs-session", id, addrN(200+k))
	}
	wait.Eventually(t, 10*time.Second, "every node holds every registration", func() error {
		return converged(c, allNodes(3), views, want)
	})

	c.Kill(victim)
	down := want.clone() // only node 0's instances stay on the others
	for svc, ids := range want.ids() {
		for _, id := range ids {
			if svc != "rs-other" {
				down.remove(svc, id)
			}
		}
	}
	wait.Eventually(t, 15*time.Second, "the crashed node's instances are reaped on the others", func() error {
		return converged(c, []int{0, 2}, []*streamView{views[0], views[2]}, down)
	})
	// A change while it is down must reach it through sync.
	if err := registerPlain(ctx, c, 0, "rs-other", "o-new", addrN(150), 9000); err != nil {
		t.Fatal(err)
	}
	want.add("rs-other", "o-new", addrN(150))
	for _, v := range views {
		v.resetVanished()
	}

	restarted := time.Now()
	c.Restart(victim)
	ready := time.Since(restarted)
	plain := want.clone()
	for k := range 5 {
		plain.remove("rs-session", fmt.Sprintf("s-%d", k))
	}
	plainBack := wait.Eventually(t, 15*time.Second, "the plain registrations are back everywhere", func() error {
		for _, v := range views {
			for _, id := range plain.ids()["rs-plain"] {
				if _, ok := v.instance("rs-plain", id); !ok {
					return fmt.Errorf("watch on %s: rs-plain/%s missing", v.node, id)
				}
			}
		}
		return nil
	}) + ready
	all := wait.Eventually(t, 15*time.Second, "everything is back everywhere, sessions included", func() error {
		return converged(c, allNodes(3), views, want)
	}) + plainBack
	Figure(t, "restart_ready_seconds", ready.Seconds())
	Figure(t, "restart_plain_back_seconds", plainBack.Seconds())
	Figure(t, "restart_all_back_seconds", all.Seconds())
	for i, r := range regs {
		if n := r.Registrations(); n < 2 {
			t.Errorf("session s-%d registered %d times, want a re-registration after the restart", i, n)
		}
	}
	ep := epochs(t, c, victim)
	if len(ep) != 2 || ep[0] == ep[1] {
		t.Errorf("epochs logged by %s: %v, want two different ones", c.Node(victim).Name, ep)
	} else {
		t.Logf("epoch %s before the crash, %s after the restart", ep[0], ep[1])
	}
	for _, v := range views {
		for _, k := range v.appearedKeys() {
			if slices.Contains(removed, k) {
				t.Errorf("watch on %s: %s, removed before the crash, came back as a ghost", v.node, k)
			}
		}
	}
}
